package cloakroom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// recordFormat is the first byte of an encoded Record; it changes whenever
// the layout does, so unknown blobs are refused rather than misread. Format
// 1, written before sessions carried an epoch, is still read, as epoch 0.
const (
	recordFormat        = 2
	recordFormatNoEpoch = 1
)

// ErrBadRecord is returned by [Record.UnmarshalBinary] for input that is not
// a record this version wrote.
var ErrBadRecord = errors.New("cloakroom: malformed session record")

// maxRecordString bounds each string field of a decoded record so a
// corrupted blob cannot make the decoder allocate without limit.
const maxRecordString = 1 << 20

// MarshalBinary encodes the record into a compact, versioned byte form for
// stores that keep one blob per session.
func (r *Record) MarshalBinary() ([]byte, error) {
	n := 1 + 32 + 8*8 + 1 + 6*binary.MaxVarintLen64 + len(r.Handle) + len(r.UserID) + len(r.IP) + len(r.UserAgent) + len(r.Data)
	b := make([]byte, 0, n)
	b = append(b, recordFormat)
	b = append(b, r.Key[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Generation)
	b = binary.BigEndian.AppendUint64(b, r.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(r.CreatedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.LastSeen.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.IdleTimeout))
	b = binary.BigEndian.AppendUint64(b, uint64(r.AbsoluteDeadline.UnixNano()))
	if r.Persistent {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, r.Epoch)
	for _, s := range [...]string{r.Handle, r.UserID, r.IP, r.UserAgent} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Data)))
	b = append(b, r.Data...)
	return b, nil
}

// UnmarshalBinary decodes a record written by MarshalBinary. It rejects
// truncated, oversized or trailing input with an error wrapping ErrBadRecord.
func (r *Record) UnmarshalBinary(b []byte) error {
	const fixed = 1 + 32 + 6*8 + 1
	if len(b) < fixed || (b[0] != recordFormat && b[0] != recordFormatNoEpoch) {
		return fmt.Errorf("%w: bad header", ErrBadRecord)
	}
	var out Record
	copy(out.Key[:], b[1:33])
	p := b[33:]
	u := func() uint64 { v := binary.BigEndian.Uint64(p); p = p[8:]; return v }
	out.Generation = u()
	out.Version = u()
	out.CreatedAt = time.Unix(0, int64(u()))
	out.LastSeen = time.Unix(0, int64(u()))
	out.IdleTimeout = time.Duration(u())
	out.AbsoluteDeadline = time.Unix(0, int64(u()))
	switch p[0] {
	case 0:
	case 1:
		out.Persistent = true
	default:
		return fmt.Errorf("%w: bad flag", ErrBadRecord)
	}
	p = p[1:]
	if b[0] == recordFormat {
		epoch, k := binary.Uvarint(p)
		if k <= 0 {
			return fmt.Errorf("%w: bad epoch", ErrBadRecord)
		}
		out.Epoch, p = epoch, p[k:]
	}
	field := func(limit int) ([]byte, error) {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(limit) || n > uint64(len(p)-k) {
			return nil, fmt.Errorf("%w: bad length", ErrBadRecord)
		}
		v := p[k : k+int(n)]
		p = p[k+int(n):]
		return v, nil
	}
	var strs [4]string
	for i := range strs {
		v, err := field(maxRecordString)
		if err != nil {
			return err
		}
		strs[i] = string(v)
	}
	out.Handle, out.UserID, out.IP, out.UserAgent = strs[0], strs[1], strs[2], strs[3]
	data, err := field(len(b))
	if err != nil {
		return err
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: trailing bytes", ErrBadRecord)
	}
	if len(data) > 0 {
		out.Data = append([]byte(nil), data...)
	}
	*r = out
	return nil
}
