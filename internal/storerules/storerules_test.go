package storerules

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

func TestByCreation(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	recs := []cloakroom.Record{
		{Handle: "c", CreatedAt: t0.Add(time.Nanosecond)},
		{Handle: "b", CreatedAt: t0},
		{Handle: "d", CreatedAt: t0.Add(-time.Hour)},
		{Handle: "a", CreatedAt: t0},
	}
	slices.SortFunc(recs, ByCreation)
	var got []string
	for _, r := range recs {
		got = append(got, r.Handle)
	}
	if want := []string{"d", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("sorted handles %v, want %v (oldest first, then by handle)", got, want)
	}
}

func TestSQLBlob(t *testing.T) {
	ok := cloakroom.Record{Key: cloakroom.Key{1}, Version: math.MaxInt64, Generation: math.MaxInt64, Epoch: math.MaxInt64, Handle: "h"}
	blob, err := SQLBlob(ok)
	if err != nil {
		t.Fatalf("SQLBlob at the column limits: %v", err)
	}
	var back cloakroom.Record
	if err := back.UnmarshalBinary(blob); err != nil || back.Key != ok.Key || back.Version != ok.Version || back.Handle != ok.Handle {
		t.Fatalf("blob decodes to %+v, %v", back, err)
	}
	for name, change := range map[string]func(*cloakroom.Record){
		"version 0":          func(r *cloakroom.Record) { r.Version = 0 },
		"version past int64": func(r *cloakroom.Record) { r.Version = math.MaxInt64 + 1 },
		"generation past":    func(r *cloakroom.Record) { r.Generation = math.MaxUint64 },
		"epoch past":         func(r *cloakroom.Record) { r.Epoch = math.MaxInt64 + 1 },
	} {
		rec := ok
		change(&rec)
		if _, err := SQLBlob(rec); err == nil {
			t.Errorf("%s: SQLBlob accepted %+v", name, rec)
		}
	}
}

func TestCheckSQLAux(t *testing.T) {
	if err := CheckSQLAux(cloakroom.AuxRecord{Version: math.MaxInt64, Epoch: math.MaxInt64}); err != nil {
		t.Fatalf("CheckSQLAux at the column limits: %v", err)
	}
	for _, rec := range []cloakroom.AuxRecord{
		{Version: 0},
		{Version: math.MaxInt64 + 1},
		{Version: 1, Epoch: math.MaxInt64 + 1},
	} {
		if err := CheckSQLAux(rec); err == nil {
			t.Errorf("CheckSQLAux accepted version %d, epoch %d", rec.Version, rec.Epoch)
		}
	}
}
