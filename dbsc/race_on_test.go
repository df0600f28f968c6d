//go:build race

package dbsc_test

const raceEnabled = true
