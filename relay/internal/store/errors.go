package store

import "errors"

// Sentinel errors. Most come wrapped with context; match them with errors.Is.
var (
	// ErrDuplicate means the event's id is stored already, or that a replaceable or
	// addressable event is superseded by a newer one that is stored.
	ErrDuplicate = errors.New("store: duplicate event")
	// ErrClosed means the store is closed or closing.
	ErrClosed = errors.New("store: closed")
	// ErrTooLarge means the encoded event is larger than Options.MaxEventBytes; the wrapping
	// message names both sizes.
	ErrTooLarge = errors.New("store: event too large")
	// ErrInvalid means a field the store keys on is malformed: an id, pubkey or sig that is not
	// lowercase hex of the right length, a kind out of range, or (for Replace) a kind that is
	// neither replaceable nor addressable.
	ErrInvalid = errors.New("store: invalid event")
	// ErrScanBudget means Count or Query needed more index entries than its scan budget.
	ErrScanBudget = errors.New("store: scan budget exceeded")
)
