package cloakroom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrBadValues is returned when stored session values cannot be decoded.
var ErrBadValues = errors.New("cloakroom: malformed session values")

// Session values are encoded as a uvarint count followed by that many
// (uvarint length, key, uvarint length, value) pairs in ascending key order.
// Lookups scan the encoding in place, so reading one value from a freshly
// loaded session decodes nothing else.

// lookupValue finds key in encoded values without allocating.
func lookupValue(data []byte, key string) ([]byte, bool, error) {
	if len(data) == 0 {
		return nil, false, nil
	}
	n, k := binary.Uvarint(data)
	if k <= 0 {
		return nil, false, ErrBadValues
	}
	p := data[k:]
	for i := uint64(0); i < n; i++ {
		name, rest, ok := readChunk(p)
		if !ok {
			return nil, false, ErrBadValues
		}
		val, rest, ok := readChunk(rest)
		if !ok {
			return nil, false, ErrBadValues
		}
		p = rest
		if string(name) == key {
			return val, true, nil
		}
	}
	return nil, false, nil
}

func readChunk(p []byte) (chunk, rest []byte, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// decodeValues decodes all values into a map.
func decodeValues(data []byte) (map[string]string, error) {
	m := make(map[string]string)
	if len(data) == 0 {
		return m, nil
	}
	n, k := binary.Uvarint(data)
	if k <= 0 || n > uint64(len(data)) {
		return nil, ErrBadValues
	}
	p := data[k:]
	for i := uint64(0); i < n; i++ {
		name, rest, ok := readChunk(p)
		if !ok {
			return nil, ErrBadValues
		}
		val, rest, ok := readChunk(rest)
		if !ok {
			return nil, ErrBadValues
		}
		p = rest
		m[string(name)] = string(val)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrBadValues)
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
