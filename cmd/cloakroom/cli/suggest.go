package cli

import (
	"flag"
	"fmt"
	"strings"
)

// closest returns the name a mistyped one most likely meant: the nearest
// by edit distance (a transposed pair counts as one edit) when it is within
// about a third of the typed length, else the one name the typed text
// begins, else "". Case is ignored; ties go to the earlier name.
func closest(typed string, names []string) string {
	typed = strings.ToLower(typed)
	if len(typed) < 3 {
		return "" // too little to guess from
	}
	limit := max(1, len(typed)/3)
	best, bestDistance := "", limit+1
	for _, name := range names {
		if d := editDistance(typed, strings.ToLower(name)); d < bestDistance {
			best, bestDistance = name, d
		}
	}
	if best != "" {
		return best
	}
	var starts []string
	for _, name := range names {
		if strings.HasPrefix(strings.ToLower(name), typed) {
			starts = append(starts, name)
		}
	}
	if len(starts) == 1 {
		return starts[0]
	}
	return ""
}

// editDistance is the optimal string alignment distance between a and b:
// the insertions, deletions, substitutions and swaps of two neighbouring
// bytes that turn one into the other.
func editDistance(a, b string) int {
	// Three rows: two back (for swaps), the previous and the current.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// didYouMean is "; did you mean X?" with the closest name, or "".
func didYouMean(typed string, names []string, prefix string) string {
	if s := closest(typed, names); s != "" {
		return "; did you mean " + prefix + s + "?"
	}
	return ""
}

// flagNames returns the names of fs's flags.
func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// flagError turns an error of the flag package into one short line that
// names flags as the usage does (--name), with the closest known flag for
// an unknown one.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		return "unknown flag --" + name + didYouMean(name, flagNames(fs), "--")
	}
	// The flag package writes -name; the usage and the docs write --name.
	for _, lead := range []string{"flag -", "for -", "argument: -"} {
		msg = strings.Replace(msg, lead, lead+"-", 1)
	}
	return msg
}

// printUsageError prints one line saying what is wrong and where the usage
// is, instead of the whole usage.
func printUsageError(fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(fs.Output(), "%s: %s\nRun \"%s --help\" for usage.\n", fs.Name(), msg, fs.Name())
	return exitUsage
}

// unknownCommand reports a command name that is not one of names.
func unknownCommand(e *env, who, what, typed string, names []string, helpCommand, listed string) int {
	fmt.Fprintf(e.stderr, "%s: unknown %s %q%s\nRun \"%s\" for the %s.\n", who, what, typed, didYouMean(typed, names, ""), helpCommand, listed)
	return exitUsage
}

// commandNames returns the names of the top-level commands.
func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}
