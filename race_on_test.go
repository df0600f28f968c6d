//go:build race

package cloakroom_test

const raceEnabled = true
