package sqlrows

import (
	"errors"
	"slices"
	"strconv"
	"testing"
)

// fakeRows yields values, then ends with end (nil for a clean end), as a
// driver does that reports a query's failure only once its rows are read.
type fakeRows struct {
	values []string
	end    error
	at     int // rows read
	done   bool
}

func (r *fakeRows) Next() bool {
	if r.at == len(r.values) {
		r.done = true
		return false
	}
	r.at++
	return true
}

func (r *fakeRows) Err() error {
	if r.done {
		return r.end
	}
	return nil
}

func scanInt(r *fakeRows) (int, error) { return strconv.Atoi(r.values[r.at-1]) }

func TestFirst(t *testing.T) {
	late := errors.New("late failure")
	for _, c := range []struct {
		name      string
		rows      fakeRows
		want      int
		wantFound bool
		wantErr   string
	}{
		{name: "none", rows: fakeRows{}},
		{name: "one", rows: fakeRows{values: []string{"7"}}, want: 7, wantFound: true},
		{name: "first of two", rows: fakeRows{values: []string{"7", "8"}}, want: 7, wantFound: true},
		{name: "none, failed", rows: fakeRows{end: late}, wantErr: late.Error()},
		// The failure comes after the row: the row must not be taken.
		{name: "failed after the row", rows: fakeRows{values: []string{"7"}, end: late}, wantErr: late.Error()},
		{name: "scan fails", rows: fakeRows{values: []string{"x"}}, wantErr: `strconv.Atoi: parsing "x": invalid syntax`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, found, err := First(&c.rows, scanInt)
			if got != c.want || found != c.wantFound || errString(err) != c.wantErr {
				t.Fatalf("First = %d, %v, %v; want %d, %v, %q", got, found, err, c.want, c.wantFound, c.wantErr)
			}
		})
	}
}

func TestAll(t *testing.T) {
	late := errors.New("late failure")
	for _, c := range []struct {
		name    string
		rows    fakeRows
		want    []int
		wantErr string
	}{
		{name: "none", rows: fakeRows{}},
		{name: "in order", rows: fakeRows{values: []string{"3", "1", "2"}}, want: []int{3, 1, 2}},
		{name: "failed after the rows", rows: fakeRows{values: []string{"1"}, end: late}, wantErr: late.Error()},
		{name: "scan fails", rows: fakeRows{values: []string{"1", "x", "2"}}, wantErr: `strconv.Atoi: parsing "x": invalid syntax`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := All(&c.rows, scanInt)
			if !slices.Equal(got, c.want) || errString(err) != c.wantErr {
				t.Fatalf("All = %v, %v; want %v, %q", got, err, c.want, c.wantErr)
			}
			if c.want == nil && got != nil {
				t.Fatalf("All = %#v, want nil", got)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
