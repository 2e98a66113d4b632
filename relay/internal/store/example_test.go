package store_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/relay/internal/store"
)

func Example() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := store.Open(store.Options{Path: dir, MapSize: 1 << 30})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	evt := &nostr.Event{Kind: 1, CreatedAt: 1700000000, Content: "hello", Tags: nostr.Tags{{"t", "greeting"}}}
	if err := evt.Sign("0000000000000000000000000000000000000000000000000000000000000001"); err != nil {
		log.Fatal(err)
	}

	// Enqueue answers at once; a relay can broadcast evt now and send OK after Wait.
	c, err := s.Enqueue(evt)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fresh:", c.Fresh, "stored:", c.Wait())
	fmt.Println("again:", s.Save(evt))

	// emit runs with no transaction open, so it may block on a slow client.
	f := nostr.Filter{Tags: nostr.TagMap{"t": {"greeting"}}}
	err = s.Query(context.Background(), f, store.Limits{Limit: 10}, func(evts []*nostr.Event) error {
		for _, e := range evts {
			fmt.Println("found:", e.Content)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	n, err := s.Count(context.Background(), f, store.Limits{Scan: 10000})
	fmt.Println("count:", n, err)
	// Output:
	// fresh: true stored: <nil>
	// again: store: duplicate event
	// found: hello
	// count: 1 <nil>
}
