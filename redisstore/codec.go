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
	flagEpoch      // a uvarint epoch follows the absolute deadline; without it, 0
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
// The scripts read the generation, the version, the deadlines and the
// epoch from the front (see luaRecord); everything else is opaque to them.
// The epoch takes no byte while it is 0, so records written before
// sessions had one read as epoch 0.
//
//	format, flags, the key's last keyTailLen bytes,
//	uvarint generation, uvarint version,
//	varint created (Unix µs), varint last seen - created (µs),
//	varint idle timeout, varint absolute deadline - created (s or µs),
//	uvarint epoch (only with flagEpoch),
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
	if rec.Epoch != 0 {
		flags |= flagEpoch
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
	if rec.Epoch != 0 {
		b = binary.AppendUvarint(b, rec.Epoch)
	}
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
	if flags&^(flagPersistent|flagHandleRaw|flagIPRaw|flagSeconds|flagEpoch) != 0 {
		return bad("unknown flags")
	}
	if string(b[2:2+keyTailLen]) != string(key[fieldLen:]) {
		return bad("stored under another session's key")
	}
	r := varintReader{p: b[2+keyTailLen:]}
	rec := cloakroom.Record{Key: key, UserID: userID}
	rec.Generation = r.uvarint()
	rec.Version = r.uvarint()
	created, last, idle, abs := r.varint(), r.varint(), r.varint(), r.varint()
	if flags&flagEpoch != 0 {
		rec.Epoch = r.uvarint()
	}
	if r.truncated {
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
		n := r.uvarint()
		if r.truncated || n > maxCompactString || n > uint64(len(r.p)) {
			return bad("bad length")
		}
		fields[i], r.p = r.p[:n], r.p[n:]
	}
	if len(r.p) != 0 {
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

// auxFormat is the first byte of an encoded auxiliary record.
const auxFormat = 1

// auxEndsWithSessions is the flag of an auxiliary record bound to the
// sessions' epoch.
const auxEndsWithSessions = 1

// encodeAux encodes an auxiliary record without its key (the Redis key
// names it). The CAS script reads the front (see luaAux).
//
//	format, flags, uvarint version, varint expires (Unix µs),
//	uvarint epoch, then the data to the end
func encodeAux(rec *cloakroom.AuxRecord) []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(rec.Data))
	var flags byte
	var epoch uint64
	if rec.EndsWithSessions {
		flags, epoch = auxEndsWithSessions, rec.Epoch
	}
	b = append(b, auxFormat, flags)
	b = binary.AppendUvarint(b, rec.Version)
	b = binary.AppendVarint(b, rec.Expires.UnixMicro())
	b = binary.AppendUvarint(b, epoch)
	return append(b, rec.Data...)
}

// decodeAux decodes a record written by encodeAux under key. Data shares
// b's memory.
func decodeAux(b []byte, key cloakroom.Key) (cloakroom.AuxRecord, error) {
	bad := func(what string) (cloakroom.AuxRecord, error) {
		return cloakroom.AuxRecord{}, fmt.Errorf("%w: auxiliary record: %s", cloakroom.ErrBadRecord, what)
	}
	if len(b) < 2 || b[0] != auxFormat || b[1]&^auxEndsWithSessions != 0 {
		return bad("bad header")
	}
	rec := cloakroom.AuxRecord{Key: key, EndsWithSessions: b[1] == auxEndsWithSessions}
	r := varintReader{p: b[2:]}
	rec.Version = r.uvarint()
	rec.Expires = time.UnixMicro(r.varint())
	rec.Epoch = r.uvarint()
	if r.truncated {
		return bad("truncated")
	}
	if len(r.p) > 0 {
		rec.Data = r.p
	}
	return rec, nil
}

// varintReader reads varints off the front of p. Once one is truncated or
// overlong, truncated is set and every later read answers 0.
type varintReader struct {
	p         []byte
	truncated bool
}

func (r *varintReader) uvarint() uint64 { return readVarint(r, binary.Uvarint) }
func (r *varintReader) varint() int64   { return readVarint(r, binary.Varint) }

func readVarint[T uint64 | int64](r *varintReader, decode func([]byte) (T, int)) T {
	v, n := decode(r.p)
	if n <= 0 || r.truncated {
		r.truncated = true
		return 0
	}
	r.p = r.p[n:]
	return v
}
