package redisstore

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/cloakroom/cloakroom"
)

// compactFormat is the first byte of a compact record.
const compactFormat = 2

// Flags of a compact record.
const (
	flagPersistent = 1 << iota
	flagHandleRaw  // the handle is the base64url (unpadded) form of the stored bytes
	flagIPRaw      // the IP is the textual form of the stored 4 or 16 bytes
	flagSeconds    // the idle timeout and absolute deadline count seconds, not µs
)

// fieldLen is how much of a session key names its field in the user's
// session hash; the record keeps the rest (keyTailLen bytes). The split
// keeps the field within Redis' smallest string header and a 32-byte
// allocation, where the whole key would take 48: one session in 1.6e-8 of
// a billion would have to share 240 bits of a SHA-256 with another session
// of the same user to collide, and the tail check would still catch it.
const (
	fieldLen   = 30
	keyTailLen = len(cloakroom.Key{}) - fieldLen
)

// maxCompactString bounds each string of a decoded record, so a corrupted
// value cannot make the decoder allocate without limit.
const maxCompactString = 1 << 20

// encodeCompact appends the compact encoding of rec to b. It leaves out
// what the key names already say (the user ID, most of the session key),
// keeps times to the microsecond as varints relative to the creation time
// (durations in seconds when they are whole seconds), and stores a handle
// or IP address in binary when that form gives back the exact same text.
// The scripts read the generation, the version and the deadlines from the
// front (see luaRecord); everything else is opaque to them.
//
//	format, flags, the key's last keyTailLen bytes,
//	uvarint generation, uvarint version,
//	varint created (Unix µs), varint last seen - created (µs),
//	varint idle timeout, varint absolute deadline - created (s or µs),
//	then handle, IP, user agent and data, each uvarint length + bytes
func encodeCompact(b []byte, rec *cloakroom.Record) []byte {
	created := rec.CreatedAt.UnixMicro()
	idle, abs := rec.IdleTimeout.Microseconds(), rec.AbsoluteDeadline.UnixMicro()-created
	var flags byte
	if idle%1e6 == 0 && abs%1e6 == 0 {
		flags |= flagSeconds
		idle, abs = idle/1e6, abs/1e6
	}
	if rec.Persistent {
		flags |= flagPersistent
	}
	handle, handleRaw := rawHandle(rec.Handle)
	if handleRaw {
		flags |= flagHandleRaw
	}
	ip, ipRaw := rawIP(rec.IP)
	if ipRaw {
		flags |= flagIPRaw
	}
	b = append(b, compactFormat, flags)
	b = append(b, rec.Key[fieldLen:]...)
	b = binary.AppendUvarint(b, rec.Generation)
	b = binary.AppendUvarint(b, rec.Version)
	b = binary.AppendVarint(b, created)
	b = binary.AppendVarint(b, rec.LastSeen.UnixMicro()-created)
	b = binary.AppendVarint(b, idle)
	b = binary.AppendVarint(b, abs)
	for _, s := range [...][]byte{handle, ip, []byte(rec.UserAgent), rec.Data} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// rawHandle returns the bytes to store for a handle, and whether they are
// its base64url decoding rather than its text.
func rawHandle(h string) ([]byte, bool) {
	if raw, err := base64.RawURLEncoding.DecodeString(h); err == nil && len(h) > 0 && base64.RawURLEncoding.EncodeToString(raw) == h {
		return raw, true
	}
	return []byte(h), false
}

func rawIP(s string) ([]byte, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.String() == s && a.Zone() == "" {
		return a.AsSlice(), true
	}
	return []byte(s), false
}

// decodeCompact decodes a record written by encodeCompact, giving it the
// key and user ID its key names carry. It copies what it keeps out of b.
func decodeCompact(b []byte, key cloakroom.Key, userID string) (cloakroom.Record, error) {
	bad := func(what string) (cloakroom.Record, error) {
		return cloakroom.Record{}, fmt.Errorf("%w: compact record: %s", cloakroom.ErrBadRecord, what)
	}
	if len(b) < 2+keyTailLen || b[0] != compactFormat {
		return bad("bad header")
	}
	flags := b[1]
	if flags&^(flagPersistent|flagHandleRaw|flagIPRaw|flagSeconds) != 0 {
		return bad("unknown flags")
	}
	if string(b[2:2+keyTailLen]) != string(key[fieldLen:]) {
		return bad("stored under another session's key")
	}
	p := b[2+keyTailLen:]
	uvar := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	svar := func() (int64, bool) {
		v, n := binary.Varint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	rec := cloakroom.Record{Key: key, UserID: userID}
	var ok1, ok2, ok3, ok4, ok5, ok6 bool
	var created, last, idle, abs int64
	rec.Generation, ok1 = uvar()
	rec.Version, ok2 = uvar()
	created, ok3 = svar()
	last, ok4 = svar()
	idle, ok5 = svar()
	abs, ok6 = svar()
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return bad("truncated")
	}
	if flags&flagSeconds != 0 {
		idle, abs = idle*1e6, abs*1e6
	}
	rec.CreatedAt = time.UnixMicro(created)
	rec.LastSeen = time.UnixMicro(created + last)
	rec.IdleTimeout = time.Duration(idle) * time.Microsecond
	rec.AbsoluteDeadline = time.UnixMicro(created + abs)
	rec.Persistent = flags&flagPersistent != 0
	var fields [4][]byte
	for i := range fields {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > maxCompactString || n > uint64(len(p)-k) {
			return bad("bad length")
		}
		fields[i] = p[k : k+int(n)]
		p = p[k+int(n):]
	}
	if len(p) != 0 {
		return bad("trailing bytes")
	}
	if flags&flagHandleRaw != 0 {
		rec.Handle = base64.RawURLEncoding.EncodeToString(fields[0])
	} else {
		rec.Handle = string(fields[0])
	}
	if flags&flagIPRaw != 0 {
		a, ok := netip.AddrFromSlice(fields[1])
		if !ok {
			return bad("bad address")
		}
		rec.IP = a.String()
	} else {
		rec.IP = string(fields[1])
	}
	rec.UserAgent = string(fields[2])
	if len(fields[3]) > 0 {
		rec.Data = append([]byte(nil), fields[3]...)
	}
	return rec, nil
}
