package nip90

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by the Parse functions. Match them with errors.Is.
var (
	// ErrWrongKind means the event's kind is not the one the parser reads.
	ErrWrongKind = errors.New("nip90: wrong kind")
	// ErrMissingTag means a required tag is absent; the wrapping error names it.
	ErrMissingTag = errors.New("nip90: missing tag")
	// ErrBadTag means a tag is malformed or contradicts another; the error is a *TagError.
	ErrBadTag = errors.New("nip90: bad tag")
)

// TagError says which tag of an event was rejected and why. It unwraps to ErrBadTag.
type TagError struct {
	Tag    string // the tag's name, e.g. "i"
	Index  int    // its position in the event's tags, from 0; -1 when not from an event
	Reason string // what is wrong with it, in words a client can read
}

func (e *TagError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("nip90: tag %q: %s", e.Tag, e.Reason)
	}
	return fmt.Sprintf("nip90: tag %q #%d: %s", e.Tag, e.Index, e.Reason)
}

// Unwrap returns ErrBadTag, so errors.Is(err, ErrBadTag) holds for every *TagError.
func (e *TagError) Unwrap() error { return ErrBadTag }

func badTag(tag string, index int, format string, args ...any) *TagError {
	return &TagError{Tag: tag, Index: index, Reason: fmt.Sprintf(format, args...)}
}

// duplicate reports a tag that may appear only once.
func duplicate(tag string, index, first int) *TagError {
	return badTag(tag, index, "appears more than once (first at #%d)", first)
}

func missingTag(tag string) error { return fmt.Errorf("%w %q", ErrMissingTag, tag) }

func wrongKind(kind int, want string) error {
	return fmt.Errorf("%w: %d is not %s", ErrWrongKind, kind, want)
}

var errNilEvent = fmt.Errorf("%w: nil event", ErrWrongKind)
