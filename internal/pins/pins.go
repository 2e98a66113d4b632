//go:build pins

// Package pins holds the module's version pins for libraries that later components use
// (BOLT11 decoding for the client and wallet, ONNX Runtime for the worker). The build tag keeps
// it out of every binary; `go mod tidy` reads all tags, so the pins stay in go.mod.
//
// lnd is required at v0.19.3-beta (indirectly, through ln-decodepay): ln-decodepay's default
// lnd v0.18.3 does not compile against the secp256k1 version go-nostr needs.
package pins

import (
	_ "github.com/nbd-wtf/ln-decodepay"
	_ "github.com/yalue/onnxruntime_go"
)
