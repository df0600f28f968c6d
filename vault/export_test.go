package vault

// Internals the tests check directly.
var (
	FindStrings   = findStrings
	ApplyEdits    = applyEdits
	GuardLeaks    = guardLeaks
	UserFromToken = userFromToken
	StripValues   = stripValues
	Redacted      = redacted
	DeleteHeader  = deleteHeader
)

// DropPaths removes the members at paths, as DropField does.
func DropPaths(body []byte, paths []JSONPath) ([]byte, error) {
	found, err := findStrings(body, paths)
	if err != nil {
		return nil, err
	}
	var edits []edit
	for _, f := range found {
		if f.memberStart >= 0 {
			edits = append(edits, edit{start: f.memberStart, end: f.end, drop: true})
		}
	}
	return applyEdits(body, edits), nil
}

// ReplacePaths replaces the strings at paths with repl (a JSON string).
func ReplacePaths(body []byte, paths []JSONPath, repl string) ([]byte, error) {
	found, err := findStrings(body, paths)
	if err != nil {
		return nil, err
	}
	var edits []edit
	for _, f := range found {
		edits = append(edits, edit{start: f.start, end: f.end, repl: []byte(repl)})
	}
	return applyEdits(body, edits), nil
}
