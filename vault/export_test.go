package vault

// Internals the tests check directly.
var (
	FindStrings   = findStrings
	ApplyEdits    = applyEdits
	GuardLeaks    = guardLeaks
	UserFromToken = userFromToken
	Redacted      = redacted
	DeleteHeader  = deleteHeader
	// ErrUncheckable: a valid body findStrings will not walk.
	ErrUncheckable = errUncheckable
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

// HoldsToken is the header check.
var HoldsToken = holdsToken

// ReplaceRanges replaces each body[r[0]:r[1]] (in order, not overlapping)
// with repl, in one applyEdits.
func ReplaceRanges(body []byte, ranges [][2]int, repl string) []byte {
	edits := make([]edit, len(ranges))
	for i, r := range ranges {
		edits[i] = edit{start: r[0], end: r[1], repl: []byte(repl)}
	}
	return applyEdits(body, edits)
}

// DropMembers removes the object members body[r[0]:r[1]] (key to value
// end, in order), as DropField does, in one applyEdits.
func DropMembers(body []byte, members [][2]int) []byte {
	edits := make([]edit, len(members))
	for i, r := range members {
		edits[i] = edit{start: r[0], end: r[1], drop: true}
	}
	return applyEdits(body, edits)
}

// StripValues removes the named parameters from an urlencoded string.
func StripValues(s string, names ...string) (string, bool) {
	return stripValues(s, newParamNames(names...))
}

// StripJSON removes the named parameters from a JSON request body.
func StripJSON(body []byte, names ...string) ([]byte, error) {
	return stripJSON(body, newParamNames(names...))
}

// StripMultipart removes the named parameters from a multipart body.
func StripMultipart(body []byte, contentType string, names ...string) ([]byte, error) {
	return stripMultipart(body, contentType, newParamNames(names...))
}

// NameStripped reports whether a parameter name, as it came, is one of
// names as a backend reads it.
func NameStripped(name string, names ...string) bool { return newParamNames(names...).strips(name) }
