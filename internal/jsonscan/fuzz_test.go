package jsonscan_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/jsonscan"
)

// FuzzScan: the scanner agrees with encoding/json on which documents are
// JSON (but for nesting deeper than MaxDepth, which it refuses), finds at
// each wanted path the string encoding/json decodes there, at offsets
// holding that string, and reports members that are whole members.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"user":{"email":"a@b","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"}}`,
		`{"user":{"t\u006fken":"x\ud83d\ude00\ud800y\u00e9"},"list":[0,{"jwt":"J"}],"0":{"jwt":"K"}}`,
		`[{"user":{"token":"a"}},{"user":{"token":"b"}}] `,
		` {"a" : [1, -0.5e+3, true, false, null, "\"\\\/\b\f\n\r\t"]} `,
		`{"user":{"token":"A","token":"B"}}`, `{"a":1,}`, `[1,]`, `01`, `{"a"}`, "\"\xff\"", `{"user":{"token":"\xed\xa0\x80"}}`,
	} {
		f.Add([]byte(s), "token")
	}
	f.Fuzz(func(t *testing.T, doc []byte, segment string) {
		var wanted [][]string // distinct, as Find wants them
		seen := map[string]bool{}
		for _, p := range [][]string{{"user", "token"}, {"list", "1", "jwt"}, {"0", "jwt"}, {"a"}, {segment}, {"user", segment}} {
			if k := strings.Join(p, "\x00"); !seen[k] {
				seen[k] = true
				wanted = append(wanted, p)
			}
		}
		matches, err := jsonscan.Find(doc, wanted)
		valid, ours := json.Valid(doc), jsonscan.Valid(doc)
		if valid != ours && !(valid && errors.Is(err, jsonscan.ErrTooDeep)) {
			t.Fatalf("encoding/json says valid %v, the scanner %v (%v)", valid, ours, err)
		}
		if errors.Is(err, jsonscan.ErrDuplicate) || !valid {
			return
		}
		if err != nil {
			if !errors.Is(err, jsonscan.ErrTooDeep) {
				t.Fatalf("valid JSON refused: %v", err)
			}
			return
		}
		var root any
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.UseNumber() // 1E700 is JSON, but no float64
		if err := dec.Decode(&root); err != nil {
			t.Fatal(err)
		}
		found := map[int]jsonscan.Match{}
		for _, m := range matches {
			if _, twice := found[m.Path]; twice {
				t.Fatalf("path %v matched twice", wanted[m.Path])
			}
			found[m.Path] = m
			var text string
			if err := json.Unmarshal(doc[m.Start:m.End], &text); err != nil || text != m.Text {
				t.Fatalf("match %+v: the bytes %q decode to %q (%v)", m, doc[m.Start:m.End], text, err)
			}
			if m.MemberStart >= 0 && !json.Valid([]byte("{"+string(doc[m.MemberStart:m.End])+"}")) {
				t.Fatalf("member %q is not one", doc[m.MemberStart:m.End])
			}
		}
		for i, p := range wanted {
			v, ok := at(root, p).(string)
			m, matched := found[i]
			if ok != matched || ok && v != m.Text {
				t.Fatalf("path %q: encoding/json finds %q (%v), the scanner %q (%v)", p, v, ok, m.Text, matched)
			}
		}
		members, err := jsonscan.Members(doc, func(key []byte) bool { return bytes.Contains(key, []byte(segment)) })
		if err != nil {
			t.Fatalf("Members refused valid JSON: %v", err)
		}
		end := -1
		for _, m := range members {
			if m.Start < end || doc[m.Start] != '"' || !json.Valid([]byte("{"+string(doc[m.Start:m.End])+"}")) {
				t.Fatalf("member %q (after %d) is not one", doc[m.Start:m.End], end)
			}
			end = m.End
		}
	})
}

// at returns the value at path p of a decoded document, as the scanner
// reads paths: a numeric segment is an array index or an object key.
func at(v any, p []string) any {
	for _, seg := range p {
		switch c := v.(type) {
		case map[string]any:
			v = c[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) || strconv.Itoa(i) != seg {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

// FuzzAppendEscape: an escape decodes as encoding/json decodes it inside a
// string, and anything that is not an escape is left alone.
func FuzzAppendEscape(f *testing.F) {
	for _, s := range []string{`\u0065`, `\ud83d\ude00`, `\ud800\u0041`, `\udc00`, `\n`, `\/`, `\x`, `\u12`, `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, n := jsonscan.AppendEscape([]byte("prefix"), []byte(s))
		if !strings.HasPrefix(string(out), "prefix") {
			t.Fatalf("dst lost: %q", out)
		}
		if n == 0 {
			if len(out) != len("prefix") {
				t.Fatalf("%q is no escape, yet %q was appended", s, out)
			}
			return
		}
		var want string
		if err := json.Unmarshal([]byte(`"`+s[:n]+`"`), &want); err != nil || want != string(out[len("prefix"):]) {
			t.Fatalf("%q: %q, encoding/json %q (%v)", s[:n], out[len("prefix"):], want, err)
		}
	})
}
