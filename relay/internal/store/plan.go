package store

import (
	"bytes"
	"math"
	"slices"
	"sort"

	"github.com/nbd-wtf/go-nostr"
)

// maxAuthorKindPairs is the most author×kind ranges a plan uses; beyond it, authors alone.
const maxAuthorKindPairs = 1000

// plan is how a filter is answered: direct id lookups, or a merge of index ranges walked
// newest first, each bounded by since and until.
type plan struct {
	none   bool       // nothing can match
	byIDs  bool       // a filter with ids: direct lookups
	ids    [][32]byte // those ids
	ranges [][]byte   // index range prefixes, otherwise
	// exact reports that every entry in the ranges matches the filter, so counting needs no
	// event reads.
	exact  bool
	lo, hi uint64 // ts bounds from since and until, inclusive
}

// makePlan picks the index for f: ids; else the single-letter tag with the fewest values;
// else author×kind pairs (when there are at most maxAuthorKindPairs); else authors; else
// kinds; else everything by created_at. Values that cannot match any stored event (malformed
// hex, impossible kinds) get no range. An empty (non-nil) list of ids, kinds, authors or tag
// values matches nothing, as in Filter.Matches.
func makePlan(f nostr.Filter) plan {
	p := plan{lo: 0, hi: math.MaxUint64}
	if f.Search != "" {
		return plan{none: true} // no full-text index
	}
	if f.Since != nil {
		p.lo = tsKey(*f.Since)
	}
	if f.Until != nil {
		p.hi = tsKey(*f.Until)
	}
	if p.lo > p.hi || (f.IDs != nil && len(f.IDs) == 0) ||
		(f.Kinds != nil && len(f.Kinds) == 0) || (f.Authors != nil && len(f.Authors) == 0) {
		return plan{none: true}
	}
	tagged := false // some tag values constrain the result
	for _, vals := range f.Tags {
		if vals != nil && len(vals) == 0 {
			return plan{none: true}
		}
		tagged = tagged || vals != nil
	}

	if f.IDs != nil {
		seen := map[[32]byte]bool{}
		for _, s := range f.IDs {
			var id [32]byte
			if parseHex(id[:], s) && !seen[id] {
				seen[id] = true
				p.ids = append(p.ids, id)
			}
		}
		p.byIDs = true
		p.none = len(p.ids) == 0
		return p
	}

	var kinds []uint32
	if f.Kinds != nil {
		for _, k := range f.Kinds {
			if k >= 0 && k <= math.MaxUint32 {
				kinds = append(kinds, uint32(k))
			}
		}
		slices.Sort(kinds)
		kinds = slices.Compact(kinds)
		if len(kinds) == 0 {
			return plan{none: true}
		}
	}
	var authors [][32]byte
	if f.Authors != nil {
		for _, s := range f.Authors {
			var pk [32]byte
			if parseHex(pk[:], s) {
				authors = append(authors, pk)
			}
		}
		slices.SortFunc(authors, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
		authors = slices.Compact(authors)
		if len(authors) == 0 {
			return plan{none: true}
		}
	}

	if letter, vals, ok := narrowestTag(f.Tags); ok {
		for _, v := range vals {
			p.ranges = append(p.ranges, tagPrefix(letter, v))
		}
		return p // never exact: the hash may collide, and other fields are unchecked
	}
	p.exact = !tagged
	switch {
	case authors != nil && kinds != nil && len(authors)*len(kinds) <= maxAuthorKindPairs:
		for _, pk := range authors {
			for _, k := range kinds {
				p.ranges = append(p.ranges, authorKindPrefix(pk, k))
			}
		}
	case authors != nil:
		p.exact = p.exact && kinds == nil
		for _, pk := range authors {
			p.ranges = append(p.ranges, authorPrefix(pk))
		}
	case kinds != nil:
		for _, k := range kinds {
			p.ranges = append(p.ranges, kindPrefix(k))
		}
	default:
		p.ranges = [][]byte{{byCreated}}
	}
	return p
}

// narrowestTag returns the indexed (single-letter) tag of f with the fewest distinct values.
func narrowestTag(tags nostr.TagMap) (letter byte, vals []string, ok bool) {
	names := make([]string, 0, len(tags))
	for name, v := range tags {
		if len(name) == 1 && v != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names) // map order is random; plans should not be
	for _, name := range names {
		v := slices.Clone(tags[name])
		slices.Sort(v)
		v = slices.Compact(v)
		if !ok || len(v) < len(vals) {
			letter, vals, ok = name[0], v, true
		}
	}
	return letter, vals, ok
}

// everything reports whether the plan matches every stored event.
func (p plan) everything() bool {
	return p.exact && !p.none && !p.byIDs && len(p.ranges) == 1 && p.ranges[0][0] == byCreated &&
		p.lo == 0 && p.hi == math.MaxUint64
}
