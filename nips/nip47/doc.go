// Package nip47 speaks NIP-47, "Nostr Wallet Connect" (NWC): a client asks a wallet service to
// pay and make invoices through encrypted ephemeral events on relays the two share.
//
// The package has the wire types (types.go), the connection URI (ParseURI, URI, Secret), the
// wallet's info event (ParseInfo, Info), a Client for one wallet and a Service that serves the
// protocol for a wallet key. Both do their relay I/O through a Transport the caller adapts from
// its relay connection(s); the package itself opens no sockets, logs nothing and holds no
// global state.
//
// # Revision
//
// We follow 47.md as of nostr-protocol/nips commit 00acfb4c9896005845fbf31a8e6ba010d7d272aa,
// plus the encryption negotiation of later revisions: the "encryption" tag on info events
// ("nip44_v2 nip04") and requests ("nip44_v2" or "nip04"; absent means nip04), kind 23197
// notifications encrypted with NIP-44 v2 next to kind 23196 ones encrypted with NIP-04, and the
// UNSUPPORTED_ENCRYPTION error. NIP-44 v2 and NIP-04 are go-nostr v0.52.3's nip44 and nip04.
//
// # Deviations and choices
//
//   - The Client waits for the wallet's info event (kind 13194) before its first request, to
//     choose an encryption: NIP-44 v2 when listed, otherwise NIP-04. An info event without an
//     "encryption" tag means NIP-04 only, as the spec says. A wallet whose info event is on none
//     of the relays cannot be called; the call fails when its context ends.
//   - Each request carries an "expiration" tag (NIP-40) at the context's deadline, or 60 s from
//     now when the context has none; the Client waits for the answer no longer than that.
//   - Client.Notifications subscribes to one notification kind, 23197 when the wallet lists
//     nip44_v2 and 23196 otherwise, so each notification arrives once; Service.Notify publishes
//     both kinds (one per encryption it accepts), as the spec asks for older clients.
//   - The Service drops, without answering: events that fail their id or signature check,
//     requests whose "expiration" is past or unreadable, requests it cannot decrypt, and third
//     and later copies of a request that is still being handled. A repeat of a request already
//     answered is answered OTHER "duplicate request" (we keep no responses to send again), and
//     so is a second copy that arrives while the first is handled (the same event from two
//     relays, or sent again), once the first is answered: every request gets one answer, and
//     the real one goes out first. With Service.Seen nil, request ids are remembered
//     in memory for 10 minutes and requests created longer ago than that are dropped, so a
//     replayed request cannot slip past a forgotten id.
//   - With MaxHandling requests in Handle, the Service answers more RATE_LIMITED; with four
//     times that many pending it drops further requests unanswered and tells OnError.
//   - Methods listed in Service.SlowMethods (the wallet lists pay_invoice: paying a hold
//     invoice waits until it is settled or cancelled) run outside those bounds, at most
//     MaxSlow at once and MaxSlowPerClient per client, beyond which they are answered
//     RATE_LIMITED; their answer goes out whenever Handle returns, even past the request's
//     expiration.
//   - Hold invoices (make_hold_invoice, settle_hold_invoice, cancel_hold_invoice, state
//     "accepted", the hold_invoice_accepted notification with settle_deadline) follow the
//     2026-02 addition to NIP-47; Info.SupportsHoldInvoices tells whether a wallet offers them.
//   - A request in an encryption the Service does not accept is answered UNSUPPORTED_ENCRYPTION,
//     encrypted with NIP-04 (the one scheme an old client reads), with an empty result_type
//     since the method is unknown. The Client accepts an empty result_type on error responses.
//   - A request whose JSON is malformed is answered OTHER with an empty result_type. Params must
//     be a JSON object; absent or null params read as {}.
//   - An error object without a code reads as OTHER.
//   - The Service publishes its info event with "notifications" appended to the content when
//     it advertises notification types, as the spec's example does.
//   - multi_pay_invoice, multi_pay_keysend and the other methods without a typed Client method
//     can be called with Client.Call; the Service hands any listed method to Handle.
package nip47
