// Package e2e holds the tests that run the whole system together: our relay, workers and
// customers over real websockets on 127.0.0.1. It has no code outside its tests.
package e2e
