package cloakroom

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
)

// errMalformedValues means stored session values cannot be decoded. It
// never leaves the package: a session with corrupt values reads as empty
// and its next save writes a clean encoding.
var errMalformedValues = errors.New("cloakroom: malformed session values")

// Session values are encoded as a uvarint count followed by that many
// (uvarint length, key, uvarint length, value) pairs in ascending key order.
// Lookups scan the encoding in place, so reading one value from a freshly
// loaded session decodes nothing else.

// lookupValue finds key in encoded values without allocating.
func lookupValue(data []byte, key string) ([]byte, bool, error) {
	if len(data) == 0 {
		return nil, false, nil
	}
	n, k := uvarint(data)
	if k <= 0 {
		return nil, false, errMalformedValues
	}
	p := data[k:]
	for i := uint64(0); i < n; i++ {
		name, rest, ok := readChunk(p)
		if !ok {
			return nil, false, errMalformedValues
		}
		val, rest, ok := readChunk(rest)
		if !ok {
			return nil, false, errMalformedValues
		}
		p = rest
		if string(name) == key {
			return val, true, nil
		}
	}
	return nil, false, nil
}

// uvarint reads a minimally encoded uvarint, the only spelling the
// encoder writes, so every accepted encoding has exactly one form.
func uvarint(p []byte) (uint64, int) {
	n, k := binary.Uvarint(p)
	if k > 1 && p[k-1] == 0 {
		return 0, 0 // a trailing zero byte pads a shorter encoding
	}
	return n, k
}

func readChunk(p []byte) (chunk, rest []byte, ok bool) {
	n, k := uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// decodeValues decodes all values into a map. It accepts only what
// encodeValues writes: keys strictly ascending, so no duplicates (for which
// a lookup and the map would disagree on the value).
func decodeValues(data []byte) (map[string]string, error) {
	m := make(map[string]string)
	if len(data) == 0 {
		return m, nil
	}
	n, k := uvarint(data)
	if k <= 0 || n == 0 || n > uint64(len(data)) {
		return nil, errMalformedValues // the encoder writes nothing for no values
	}
	p := data[k:]
	var prev []byte
	for i := uint64(0); i < n; i++ {
		name, rest, ok := readChunk(p)
		if !ok {
			return nil, errMalformedValues
		}
		if i > 0 && string(name) <= string(prev) {
			return nil, errMalformedValues // unsorted or duplicate key
		}
		val, rest, ok := readChunk(rest)
		if !ok {
			return nil, errMalformedValues
		}
		p, prev = rest, name
		m[string(name)] = string(val)
	}
	if len(p) != 0 {
		return nil, errMalformedValues // trailing bytes
	}
	return m, nil
}

// encodeValues encodes m deterministically (keys sorted).
func encodeValues(m map[string]string) []byte {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	size := binary.MaxVarintLen64
	for k, v := range m {
		keys = append(keys, k)
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	slices.SortFunc(keys, strings.Compare)
	b := make([]byte, 0, size)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(m[k])))
		b = append(b, m[k]...)
	}
	return b
}
