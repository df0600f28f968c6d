package cloakroom_test

import (
	"errors"
	"math"
	"testing"

	"github.com/cloakroom/cloakroom"
)

// TestRotationCheck checks the one input rule every store applies first:
// the rotations the manager makes pass, up to the largest generation and
// epoch a bump can still pass; a caller's mistake is ErrInvalidInput; a
// session that must live but is not named is ErrNotFound.
func TestRotationCheck(t *testing.T) {
	valid := func() cloakroom.Rotation {
		return cloakroom.Rotation{
			Old: cloakroom.Key{1}, OldMustLive: true, OldVersion: 3,
			New:  cloakroom.Record{Key: cloakroom.Key{2}, UserID: "alice", Version: 1, Generation: math.MaxInt64 - 1, Epoch: math.MaxInt64 - 1},
			Bump: true,
		}
	}
	if err := valid().Check(); err != nil {
		t.Fatalf("a renewal that revokes the others: %v", err)
	}
	login := cloakroom.Rotation{New: cloakroom.Record{Key: cloakroom.Key{2}, Version: 1}}
	if err := login.Check(); err != nil {
		t.Fatalf("an anonymous session over none: %v", err)
	}
	cases := []struct {
		name   string
		change func(*cloakroom.Rotation)
		want   error
	}{
		{"version 0", func(r *cloakroom.Rotation) { r.New.Version = 0 }, cloakroom.ErrInvalidInput},
		{"version 2", func(r *cloakroom.Rotation) { r.New.Version = 2 }, cloakroom.ErrInvalidInput},
		{"zero key", func(r *cloakroom.Rotation) { r.New.Key = cloakroom.Key{} }, cloakroom.ErrInvalidInput},
		{"old key", func(r *cloakroom.Rotation) { r.New.Key = r.Old }, cloakroom.ErrInvalidInput},
		{"old key, need not live", func(r *cloakroom.Rotation) { r.New.Key, r.OldMustLive = r.Old, false }, cloakroom.ErrInvalidInput},
		{"generation 2^63-1", func(r *cloakroom.Rotation) { r.New.Generation = math.MaxInt64 }, cloakroom.ErrInvalidInput},
		{"epoch 2^63-1", func(r *cloakroom.Rotation) { r.New.Epoch = math.MaxInt64 }, cloakroom.ErrInvalidInput},
		{"epoch 2^64-1", func(r *cloakroom.Rotation) { r.New.Epoch = math.MaxUint64 }, cloakroom.ErrInvalidInput},
		{"bump without a user", func(r *cloakroom.Rotation) { r.New.UserID = "" }, cloakroom.ErrInvalidInput},
		{"must live without an old session", func(r *cloakroom.Rotation) { r.Old = cloakroom.Key{} }, cloakroom.ErrNotFound},
	}
	for _, tc := range cases {
		r := valid()
		tc.change(&r)
		if err := r.Check(); !errors.Is(err, tc.want) {
			t.Errorf("%s: Check = %v, want %v", tc.name, err, tc.want)
		}
	}
}
