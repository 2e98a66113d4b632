// Package nip89 reads and writes NIP-89 handler information (kind 31990) as sparecycles
// workers publish it: the standard "d" and "k" tags and a kind-0-style metadata object in the
// content, which carries a "sparecycles" object describing the worker (models with their
// sha256, prices and limits; the execution provider; the relays it listens on). Other NIP-89
// readers see an ordinary DVM announcement; ours read the extension too.
//
// Spec followed: NIP-89 as of nostr-protocol/nips commit 0013fe98. The content object is
// optional in NIP-89; we always write one.
package nip89

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nbd-wtf/go-nostr"
)

// Kinds of NIP-89.
const (
	KindRecommendation = 31989
	KindHandlerInfo    = 31990
)

// Sentinel errors.
var (
	ErrWrongKind = errors.New("nip89: not a kind 31990 handler information event")
	ErrInvalid   = errors.New("nip89: invalid handler information")
)

// HandlerInfo is a kind 31990 event.
type HandlerInfo struct {
	PubKey     string
	CreatedAt  nostr.Timestamp
	Identifier string // the "d" tag
	Kinds      []int  // "k" tags: the job kinds served
	// Payment is the ["payment", <scheme>...] tag: the payment schemes offered ("escrow",
	// "prepay", "after"; nips/escrow.md), in the worker's order of preference. Empty: no tag.
	Payment  []string
	Metadata Metadata
}

// Metadata is the content: kind-0 style fields plus our extension.
type Metadata struct {
	Name    string  `json:"name,omitempty"`
	About   string  `json:"about,omitempty"`
	Picture string  `json:"picture,omitempty"`
	Worker  *Worker `json:"sparecycles,omitempty"`
}

// Worker is the "sparecycles" extension object of a worker's announcement.
type Worker struct {
	Version  int      `json:"version"`
	Provider string   `json:"provider"` // ONNX Runtime execution provider in use
	Device   string   `json:"device"`   // as configured: auto, cpu, cuda:N
	Relays   []string `json:"relays"`
	Models   []Model  `json:"models"`
	// Payment says how the worker is paid: "free" (no wallet) or "lightning".
	Payment string `json:"payment"`
}

// Model is one model a worker serves.
type Model struct {
	Name   string            `json:"name"`
	Task   string            `json:"task"` // "ocr", "tensor", ...
	Kind   int               `json:"kind"` // job kind
	SHA256 map[string]string `json:"sha256"`
	Price  Price             `json:"price"`
	Limits map[string]int64  `json:"limits,omitempty"`
	// Payment is the schemes this model is paid by, when they differ from the tag's.
	Payment []string `json:"payment,omitempty"`
}

// Price is what a job costs: BaseMsat plus PerUnitMsat for each Unit of input.
type Price struct {
	BaseMsat    int64  `json:"base_msat"`
	PerUnitMsat int64  `json:"per_unit_msat"`
	Unit        string `json:"unit,omitempty"`
}

// Event builds the unsigned event.
func (h *HandlerInfo) Event() (nostr.Event, error) {
	content, err := json.Marshal(h.Metadata)
	if err != nil {
		return nostr.Event{}, fmt.Errorf("nip89: encode metadata: %w", err)
	}
	tags := nostr.Tags{{"d", h.Identifier}}
	for _, k := range h.Kinds {
		tags = append(tags, nostr.Tag{"k", strconv.Itoa(k)})
	}
	if len(h.Payment) > 0 {
		tags = append(tags, append(nostr.Tag{"payment"}, h.Payment...))
	}
	return nostr.Event{Kind: KindHandlerInfo, CreatedAt: h.CreatedAt, Tags: tags, Content: string(content)}, nil
}

// ParseHandlerInfo reads a kind 31990 event. Content that is not a JSON object is an error;
// an object without our extension parses with Worker nil.
func ParseHandlerInfo(evt *nostr.Event) (*HandlerInfo, error) {
	if evt == nil || evt.Kind != KindHandlerInfo {
		return nil, ErrWrongKind
	}
	h := &HandlerInfo{PubKey: evt.PubKey, CreatedAt: evt.CreatedAt}
	seenD := false
	for i, t := range evt.Tags {
		if len(t) < 2 {
			continue
		}
		switch t[0] {
		case "d":
			if seenD {
				return nil, fmt.Errorf("%w: tag #%d: a second d tag", ErrInvalid, i)
			}
			seenD, h.Identifier = true, t[1]
		case "k":
			k, err := strconv.Atoi(t[1])
			if err != nil || k < 0 || k > 65535 {
				return nil, fmt.Errorf("%w: tag #%d: k %q is not an event kind", ErrInvalid, i, t[1])
			}
			if !slices.Contains(h.Kinds, k) {
				h.Kinds = append(h.Kinds, k)
			}
		case "payment":
			for _, s := range t[1:] {
				if s != "" && !slices.Contains(h.Payment, s) && len(h.Payment) < 8 {
					h.Payment = append(h.Payment, s)
				}
			}
		}
	}
	if !seenD {
		return nil, fmt.Errorf("%w: no d tag", ErrInvalid)
	}
	if evt.Content != "" {
		if err := json.Unmarshal([]byte(evt.Content), &h.Metadata); err != nil {
			return nil, fmt.Errorf("%w: content: %v", ErrInvalid, err)
		}
	}
	if w := h.Metadata.Worker; w != nil {
		for i := range w.Models {
			if len(w.Models[i].Limits) == 0 {
				w.Models[i].Limits = nil // "limits": {} reads as no limits
			}
			if len(w.Models[i].Payment) == 0 {
				w.Models[i].Payment = nil // "payment": [] reads as the tag's schemes
			}
		}
	}
	return h, nil
}
