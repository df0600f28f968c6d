//go:build !race

package forwardauth_test

const raceEnabled = false
