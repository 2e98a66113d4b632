package lmdb

// sparecycles patch: internal/binary.Marshal allocates 64 KiB more than any event needs, which
// made saving allocation- and GC-bound; marshal writes the same bytes into a buffer of the exact size.

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	bin "github.com/fiatjaf/eventstore/internal/binary"
	"github.com/nbd-wtf/go-nostr"
)

// marshal encodes evt exactly as bin.Marshal does.
func marshal(evt *nostr.Event) ([]byte, error) {
	if evt.CreatedAt > bin.MaxCreatedAt {
		return nil, fmt.Errorf("created_at is too big: %d", evt.CreatedAt)
	}
	if evt.Kind > bin.MaxKind {
		return nil, fmt.Errorf("kind is too big: %d, max is %d", evt.Kind, bin.MaxKind)
	}
	if n := len(evt.Content); n > bin.MaxContentSize {
		return nil, fmt.Errorf("content is too large: %d, max is %d", n, bin.MaxContentSize)
	}
	if n := len(evt.Tags); n > bin.MaxTagCount {
		return nil, fmt.Errorf("can't encode too many tags: %d, max is %d", n, bin.MaxTagCount)
	}
	size := 136 + len(evt.Content) + 2
	for _, tag := range evt.Tags {
		if n := len(tag); n > bin.MaxTagItemCount {
			return nil, fmt.Errorf("can't encode a tag with so many items: %d, max is %d", n, bin.MaxTagItemCount)
		}
		size++
		for _, item := range tag {
			if n := len(item); n > bin.MaxTagItemSize {
				return nil, fmt.Errorf("tag item is too large: %d, max is %d", n, bin.MaxTagItemSize)
			}
			size += 2 + len(item) + 1
		}
	}

	buf := make([]byte, 136, size)
	hex.Decode(buf[0:32], []byte(evt.ID))
	hex.Decode(buf[32:64], []byte(evt.PubKey))
	hex.Decode(buf[64:128], []byte(evt.Sig))
	binary.BigEndian.PutUint32(buf[128:132], uint32(evt.CreatedAt))
	binary.BigEndian.PutUint16(buf[132:134], uint16(evt.Kind))
	binary.BigEndian.PutUint16(buf[134:136], uint16(len(evt.Content)))
	buf = append(buf, evt.Content...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(evt.Tags)))
	for _, tag := range evt.Tags {
		buf = append(buf, uint8(len(tag)))
		for _, item := range tag {
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(item)))
			buf = append(buf, item...)
			buf = append(buf, 0)
		}
	}
	return buf, nil
}
