package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/nbd-wtf/go-nostr"
)

// The tests in this file port the cases of eventstore's shared store suite
// (third_party/eventstore/test) that matter to the relay, written afresh against this API.

// saveBatch queues evts in order and waits for them all, so they share commits.
func saveBatch(t testing.TB, s *Store, evts []*nostr.Event) {
	t.Helper()
	commits := make([]*Commit, len(evts))
	for i, e := range evts {
		c, err := s.Enqueue(e)
		if err != nil {
			t.Fatalf("enqueue %s: %v", e.ID, err)
		}
		commits[i] = c
	}
	for i, c := range commits {
		if err := c.Wait(); err != nil {
			t.Fatalf("commit %s: %v", evts[i].ID, err)
		}
	}
}

func ts(t nostr.Timestamp) *nostr.Timestamp { return &t }

func TestBasic(t *testing.T) {
	s := openTest(t, Options{ChunkEvents: 3})
	pk3, pk4 := hexOf("sk3"), hexOf("sk4")
	var all []*nostr.Event
	for i := range 10 {
		pk, kind := pk3, 1
		if i%3 == 0 {
			pk = pk4
		}
		if i%2 == 0 {
			kind = 9
		}
		evt := mkEvent(pk, kind, nostr.Timestamp(i*10+2), fmt.Sprintf("hello %d", i),
			nostr.Tag{"t", strconv.Itoa(i)}, nostr.Tag{"e", "0" + strconv.Itoa(i) + strings.Repeat("0", 62)})
		all = append(all, evt)
	}
	saveAll(t, s, all...)

	check := func(name string, f nostr.Filter, want ...*nostr.Event) {
		t.Helper()
		slices.SortStableFunc(want, func(a, b *nostr.Event) int { return int(b.CreatedAt - a.CreatedAt) })
		requireSame(t, queryAll(t, s, f, Limits{}), want, name)
		n, err := s.Count(t.Context(), f, Limits{})
		if err != nil || n != int64(len(want)) {
			t.Fatalf("%s: count = %d, %v; want %d", name, n, err, len(want))
		}
	}

	check("everything", nostr.Filter{}, slices.Clone(all)...)
	for i := range 10 {
		check(fmt.Sprintf("since %d", i), nostr.Filter{Since: ts(nostr.Timestamp(i*10 + 1))}, slices.Clone(all[i:])...)
	}
	check("ids", nostr.Filter{IDs: []string{all[7].ID, all[9].ID}}, all[7], all[9])
	check("kind 1", nostr.Filter{Kinds: []int{1}}, all[1], all[3], all[5], all[7], all[9])
	check("kind 9", nostr.Filter{Kinds: []int{9}}, all[0], all[2], all[4], all[6], all[8])
	check("author", nostr.Filter{Authors: []string{pk4}}, all[0], all[3], all[6], all[9])
	check("author and kind", nostr.Filter{Kinds: []int{9}, Authors: []string{pk3}}, all[2], all[4], all[8])
	check("authors and kinds", nostr.Filter{Kinds: []int{9, 5, 7}, Authors: []string{pk3, pk4, pk4[1:] + "a"}},
		all[0], all[2], all[4], all[6], all[8])
	check("tag", nostr.Filter{Tags: nostr.TagMap{"t": {"2", "4", "6"}}}, all[2], all[4], all[6])

	for _, i := range []int{4, 5} {
		if err := s.Delete(all[i].ID); err != nil {
			t.Fatal(err)
		}
	}
	check("after delete", nostr.Filter{}, slices.Concat(all[0:4], all[6:])...)
	check("tag after delete", nostr.Filter{Tags: nostr.TagMap{"t": {"2", "6"}}}, all[2], all[6])
	check("e tag", nostr.Filter{Tags: nostr.TagMap{"e": {all[3].Tags[1][1]}}}, all[3])
	for i := range 4 {
		check(fmt.Sprintf("until %d", i), nostr.Filter{Until: ts(nostr.Timestamp(i*10 + 1))}, slices.Clone(all[:i])...)
	}

	// p tags with limits
	p, p2 := strings.Repeat("e", 64), "2"+strings.Repeat("e", 63)
	pk := hexOf("p-author")
	more := []*nostr.Event{
		mkEvent(pk, 1984, 100, "first", nostr.Tag{"p", p}),
		mkEvent(pk, 1984, 101, "middle", nostr.Tag{"p", p}, nostr.Tag{"t", "x"}),
		mkEvent(pk, 1984, 102, "last", nostr.Tag{"p", p}),
		mkEvent(pk, 1111, 101, "bulufas", nostr.Tag{"p", p}),
		mkEvent(pk, 1111, 102, "safulub", nostr.Tag{"p", p}),
		mkEvent(pk, 1, 103, "bololo", nostr.Tag{"p", p}),
		mkEvent(pk, 1, 104, "wololo", nostr.Tag{"p", p2}),
		mkEvent(pk, 1, 104, "trololo", nostr.Tag{"p", p}, nostr.Tag{"p", p2}),
	}
	saveAll(t, s, more...)
	requireSame(t, queryAll(t, s, nostr.Filter{Tags: nostr.TagMap{"p": {p}}, Kinds: []int{1984}}, Limits{Limit: 2}),
		[]*nostr.Event{more[2], more[1]}, "p tag, limit 2")
	requireSame(t, queryAll(t, s, nostr.Filter{Tags: nostr.TagMap{"p": {p}, "t": {"x"}}}, Limits{Limit: 4}),
		[]*nostr.Event{more[1]}, "p and t tags")
	// same created_at: the one stored later comes first
	requireSame(t, queryAll(t, s, nostr.Filter{Tags: nostr.TagMap{"p": {p, p2}}, Kinds: []int{1}}, Limits{Limit: 4}),
		[]*nostr.Event{more[7], more[6], more[5]}, "p tags, kind 1")
}

// TestManyFilters ports eventstore's second test: many events, filters over every index.
func TestManyFilters(t *testing.T) {
	s := openTest(t, Options{})
	pk3, pk4 := hexOf("sk3"), hexOf("sk4")
	var all []*nostr.Event
	for i := range 10000 {
		eTag := make([]byte, 32)
		binary.BigEndian.PutUint16(eTag, uint16(i))
		pk, ref := pk3, pk3
		if i%3 == 0 {
			pk, ref = pk4, pk4
		}
		all = append(all, mkEvent(pk, i%10, nostr.Timestamp(i*10+2), fmt.Sprintf("hello %d", i),
			nostr.Tag{"t", fmt.Sprintf("t%d", i)}, nostr.Tag{"e", hex.EncodeToString(eTag)}, nostr.Tag{"p", ref}))
	}
	saveBatch(t, s, all)

	var eTags []string
	for i := range 20 {
		eTag := make([]byte, 32)
		binary.BigEndian.PutUint16(eTag, uint16(i))
		eTags = append(eTags, hex.EncodeToString(eTag))
	}
	stranger := hexOf("stranger")
	filters := []nostr.Filter{
		{Kinds: []int{1, 4, 8, 16}},
		{Authors: []string{pk3, stranger}},
		{Authors: []string{pk3, stranger}, Kinds: []int{3, 4}},
		{},
		{Kinds: []int{8, 9}, Tags: nostr.TagMap{"p": {pk3}}},
		{Kinds: []int{8, 9}, Tags: nostr.TagMap{"p": {pk3, pk4}}},
		{Kinds: []int{9}, Tags: nostr.TagMap{"e": eTags}},
		{Kinds: []int{5}, Tags: nostr.TagMap{"e": eTags, "t": {"t5"}}},
		{Tags: nostr.TagMap{"e": eTags}},
		{Since: ts(50000), Until: ts(50100)},
	}
	for i, f := range filters {
		for _, limit := range []int{0, 20, 50} {
			t.Run(fmt.Sprintf("filter %d limit %d", i, limit), func(t *testing.T) {
				got := queryAll(t, s, f, Limits{Limit: limit})
				if len(got) == 0 {
					t.Fatalf("%v: nothing", f)
				}
				requireSame(t, got, bruteForce(all, f, limit), f.String())
			})
		}
	}
}

// TestManyAuthors ports eventstore's manyauthors test: 1700 authors × 3 kinds is past the
// author×kind pair limit, so the plan walks authors and checks kinds.
func TestManyAuthors(t *testing.T) {
	s := openTest(t, Options{})
	const total, limit, authors = 10000, 500, 1700
	big := nostr.Filter{Kinds: []int{6, 7, 8}}
	for i := range authors {
		big.Authors = append(big.Authors, hexOf(fmt.Sprint("author", i%(total/5))))
	}
	var all []*nostr.Event
	for i := range total {
		all = append(all, mkEvent(hexOf(fmt.Sprint("author", i%(total/5))), i%10, nostr.Timestamp(i*i)/4, fmt.Sprintf("lots of stuff %d", i)))
	}
	saveBatch(t, s, all)
	if p := makePlan(big); p.exact || len(p.ranges) != authors || p.ranges[0][0] != byAuthor {
		t.Fatalf("plan: %d ranges, exact %v", len(p.ranges), p.exact)
	}
	requireSame(t, queryAll(t, s, big, Limits{Limit: limit}), bruteForce(all, big, limit), "many authors")
}

// TestUnbalanced ports eventstore's unbalanced test: most results come from a few of many
// author ranges.
func TestUnbalanced(t *testing.T) {
	s := openTest(t, Options{ChunkEvents: 7})
	const total, limit, authors = 10000, 160, 1400
	var f nostr.Filter
	for i := range authors {
		f.Authors = append(f.Authors, hexOf(fmt.Sprint("author", i%(authors*2)+1)))
	}
	var all []*nostr.Event
	for i := range total {
		seed := i%(authors*2) + 1
		all = append(all, mkEvent(hexOf(fmt.Sprint("author", seed)), 1, nostr.Timestamp(seed)*1000+nostr.Timestamp(i), fmt.Sprintf("unbalanced %d", i)))
	}
	saveBatch(t, s, all)
	requireSame(t, queryAll(t, s, f, Limits{Limit: limit}), bruteForce(all, f, limit), "unbalanced")
}

func TestReplace(t *testing.T) {
	pk := hexOf("replacer")
	type step struct {
		evt     *nostr.Event
		wantErr error
	}
	v := func(kind int, at nostr.Timestamp, content string, tags ...nostr.Tag) *nostr.Event {
		return mkEvent(pk, kind, at, content, tags...)
	}
	// two events at the same time: the lower id wins
	tieA, tieB := v(0, 50, "tie a"), v(0, 50, "tie b")
	if tieA.ID > tieB.ID {
		tieA, tieB = tieB, tieA
	}
	tests := []struct {
		name  string
		steps []step
		want  []*nostr.Event // what a query for the kind and author returns after
	}{
		{
			name:  "newer replaces",
			steps: []step{{v(0, 10, "one"), nil}, {v(0, 20, "two"), nil}},
			want:  []*nostr.Event{v(0, 20, "two")},
		},
		{
			name:  "older refused",
			steps: []step{{v(10002, 20, "two"), nil}, {v(10002, 10, "one"), ErrDuplicate}},
			want:  []*nostr.Event{v(10002, 20, "two")},
		},
		{
			name:  "same created_at, lower id wins",
			steps: []step{{tieB, nil}, {tieA, nil}, {tieB, ErrDuplicate}},
			want:  []*nostr.Event{tieA},
		},
		{
			name:  "same created_at, higher id refused",
			steps: []step{{tieA, nil}, {tieB, ErrDuplicate}},
			want:  []*nostr.Event{tieA},
		},
		{
			name:  "same event again",
			steps: []step{{v(3, 10, "follows"), nil}, {v(3, 10, "follows"), ErrDuplicate}},
			want:  []*nostr.Event{v(3, 10, "follows")},
		},
		{
			name: "addressable by d tag",
			steps: []step{
				{v(30023, 10, "a1", nostr.Tag{"d", "a"}), nil},
				{v(30023, 11, "b1", nostr.Tag{"d", "b"}), nil},
				{v(30023, 12, "a2", nostr.Tag{"d", "a"}), nil},
				{v(30023, 5, "b0", nostr.Tag{"d", "b"}), ErrDuplicate},
				{v(30023, 13, "no d"), nil},
				{v(30023, 14, "empty d", nostr.Tag{"d", ""}), nil}, // a missing d tag is d ""
			},
			want: []*nostr.Event{v(30023, 14, "empty d", nostr.Tag{"d", ""}), v(30023, 12, "a2", nostr.Tag{"d", "a"}), v(30023, 11, "b1", nostr.Tag{"d", "b"})},
		},
		{
			name:  "regular kind refused",
			steps: []step{{v(1, 10, "note"), ErrInvalid}},
		},
		{
			name:  "ephemeral kind refused",
			steps: []step{{v(20001, 10, "ping"), ErrInvalid}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{})
			for i, st := range tc.steps {
				if err := s.Replace(st.evt); !errors.Is(err, st.wantErr) {
					t.Fatalf("step %d: err = %v, want %v", i, err, st.wantErr)
				}
			}
			got := queryAll(t, s, nostr.Filter{Authors: []string{pk}}, Limits{})
			requireSame(t, got, tc.want, "stored")
		})
	}
}

// TestReplaceOrderedWithSaves: a replacement queued after a save of an older version, in the
// same batch, sees that save.
func TestReplaceOrderedWithSaves(t *testing.T) {
	s := openTest(t, Options{})
	pk := hexOf("ordered")
	old, repl := mkEvent(pk, 0, 10, "old"), mkEvent(pk, 0, 20, "new")
	c, err := s.Enqueue(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(repl); err != nil { // leads the commit of both
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(old.ID); got != nil {
		t.Fatal("the older version is still stored")
	}
	if st := s.Stats(); st.Commits != 1 || st.Ops != 2 {
		t.Fatalf("stats %+v, want both in one commit", st)
	}
}

// indexEntries counts the entries of the index DBI.
func indexEntries(t *testing.T, s *Store) uint64 {
	t.Helper()
	var n uint64
	err := s.view(t.Context(), func(txn *lmdb.Txn) error {
		st, err := txn.Stat(s.index)
		if err != nil {
			return err
		}
		n = st.Entries
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDelete(t *testing.T) {
	s := openTest(t, Options{})
	keep := mkEvent(pkA, 1, 5, "keep", nostr.Tag{"t", "x"})
	saveAll(t, s, keep)
	before := indexEntries(t, s)
	gone := mkEvent(pkB, 7, 6, "gone", nostr.Tag{"t", "x"}, nostr.Tag{"t", "x"}, nostr.Tag{"e", hexOf("e")}, nostr.Tag{"alt", "y"})
	saveAll(t, s, gone)
	if got := indexEntries(t, s); got != before+6 { // c k a K, t:x once, e
		t.Fatalf("index has %d entries, want %d", got, before+6)
	}
	if err := s.Delete(gone.ID); err != nil {
		t.Fatal(err)
	}
	if got := indexEntries(t, s); got != before {
		t.Fatalf("index has %d entries after delete, want %d", got, before)
	}
	if got, err := s.Get(gone.ID); got != nil || err != nil {
		t.Fatalf("get after delete = %v, %v", got, err)
	}
	for _, f := range []nostr.Filter{{}, {Kinds: []int{7}}, {Authors: []string{pkB}}, {Tags: nostr.TagMap{"t": {"x"}}}, {IDs: []string{gone.ID}}} {
		requireSame(t, queryAll(t, s, f, Limits{}), bruteForce([]*nostr.Event{keep}, f, 0), f.String())
	}
	if err := s.Delete(gone.ID); err != nil {
		t.Fatalf("deleting an absent event: %v", err)
	}
	if err := s.Delete("nope"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("deleting a malformed id: %v", err)
	}
	// it may be stored again
	saveAll(t, s, gone)
	requireSame(t, queryAll(t, s, nostr.Filter{Kinds: []int{7}}, Limits{}), []*nostr.Event{gone}, "saved again")
}

func TestGet(t *testing.T) {
	s := openTest(t, Options{})
	evt := mkEvent(pkA, 1, 5, "x", nostr.Tag{"t", "y"})
	saveAll(t, s, evt)
	tests := []struct {
		name    string
		id      string
		want    *nostr.Event
		wantErr error
	}{
		{"stored", evt.ID, evt, nil},
		{"absent", hexOf("absent"), nil, nil},
		{"uppercase", strings.ToUpper(evt.ID), nil, ErrInvalid},
		{"short", evt.ID[:10], nil, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Get(tc.id)
			if !errors.Is(err, tc.wantErr) || !sameEvent(got, tc.want) {
				t.Fatalf("get = %v, %v; want %v, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestLargeEvents(t *testing.T) {
	s := openTest(t, Options{ChunkBytes: 1000})
	big := strings.Repeat("0123456789", 20_000) // 200 KB
	content := mkEvent(pkA, 1, 10, big)
	tag := mkEvent(pkA, 1, 11, "", nostr.Tag{"x", big}, nostr.Tag{"t", "small"})
	small := mkEvent(pkA, 1, 12, "small", nostr.Tag{"x", big[:1000]})
	saveAll(t, s, content, tag, small)
	requireSame(t, queryAll(t, s, nostr.Filter{Kinds: []int{1}}, Limits{}), []*nostr.Event{small, tag, content}, "by kind")
	requireSame(t, queryAll(t, s, nostr.Filter{Tags: nostr.TagMap{"x": {big}}}, Limits{}), []*nostr.Event{tag}, "by 200 KB tag value")
	if got, err := s.Get(content.ID); err != nil || !sameEvent(got, content) {
		t.Fatalf("get = %v, %v", err, got != nil)
	}

	limited := openTest(t, Options{MaxEventBytes: 100_000})
	err := limited.Save(content)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("save of %d bytes with a 100000 limit: %v", len(big), err)
	}
	n := strconv.Itoa(encodedLen(content))
	if msg := err.Error(); !strings.Contains(msg, n) || !strings.Contains(msg, "100000") {
		t.Fatalf("error %q does not name both sizes", msg)
	}
	if _, err := limited.Enqueue(tag); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("enqueue of a 200 KB tag value: %v", err)
	}
}

func TestInvalidEvents(t *testing.T) {
	s := openTest(t, Options{})
	bad := mkEvent(pkA, 1, 1, "")
	bad.ID = strings.ToUpper(bad.ID)
	if err := s.Save(bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("save with an uppercase id: %v", err)
	}
	if err := s.Save(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("save nil: %v", err)
	}
}
