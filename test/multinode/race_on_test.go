//go:build race

package multinode

// raceNote says, for the report, whether the race detector was on: it
// slows every goroutine switch, which the timing figures depend on.
func raceNote() string { return ", race detector on" }
