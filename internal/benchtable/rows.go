package benchtable

// Rows is the table scripts/bench prints, in order. To add a row, or follow a benchmark whose
// metrics changed, edit this slice: Bench is the benchmark name as go test prints it without the
// "-N" suffix, Ours and Base.Metric are units passed to b.ReportMetric.
var Rows = []Row{
	// relay ingest: signed kind 5000 job requests, one author per event, ours vs vanilla khatru
	// + LMDB; CPU per accepted event against the signature floor (parse, id, one Schnorr
	// verification with the key lifted once per author, same verifier library as the row)
	{What: "relay ingest, 8 connections, 16 events in flight on each", Bench: "BenchmarkIngest",
		Ours: "ours-events/s", Base: Ref{Metric: "vanilla-events/s"}, BaseName: "vanilla khatru + LMDB", Unit: "ev/s",
		Ratio: "ratio", Target: AtLeast(3)},
	// issue 17's targets: libsecp256k1 ≥ 10× vanilla pipelined, ≥ 4× with clients waiting for
	// each OK, CPU ≤ 1.5× its floor; btcec CPU ≤ 1.25× its floor
	ingestRate("16 in flight", "BenchmarkIngestCPU", "btcec", "", AtLeast(3)),
	ingestRate("16 in flight", "BenchmarkIngestCPU", "libsecp256k1", "libsecp256k1", AtLeast(10)),
	ingestCPU("16 in flight", "BenchmarkIngestCPU", "btcec", "", AtMost(1.25)),
	ingestCPU("16 in flight", "BenchmarkIngestCPU", "libsecp256k1", "libsecp256k1", AtMost(1.5)),
	leastRelayCPU("16 in flight", "BenchmarkIngestCPU", "btcec", ""),
	leastRelayCPU("16 in flight", "BenchmarkIngestCPU", "libsecp256k1", "libsecp256k1"),
	ingestOK("16 in flight", "BenchmarkIngestCPU", "btcec", ""),
	ingestOK("16 in flight", "BenchmarkIngestCPU", "libsecp256k1", "libsecp256k1"),
	ingestRate("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "btcec", "", AtLeast(3)),
	ingestRate("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "libsecp256k1", "libsecp256k1", AtLeast(4)),
	ingestCPU("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "btcec", "", AtMost(1.25)),
	ingestCPU("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "libsecp256k1", "libsecp256k1", AtMost(1.5)),
	leastRelayCPU("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "btcec", ""),
	leastRelayCPU("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "libsecp256k1", "libsecp256k1"),
	ingestOK("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "btcec", ""),
	ingestOK("clients waiting for each OK, 820-byte events", "BenchmarkIngestClients", "libsecp256k1", "libsecp256k1"),

	// relay fan-out and connections
	{What: "publish→delivery, 1 subscriber, p50", Bench: "BenchmarkFanout/subs=1",
		Ours: "ours-p50-µs", Base: Ref{Metric: "vanilla-p50-µs"}, BaseName: "vanilla", Unit: "µs",
		Ratio: "p50-ratio", Target: AtMost(0.5)},
	{What: "publish→delivery, 100 subscribers, p50", Bench: "BenchmarkFanout/subs=100",
		Ours: "ours-p50-µs", Base: Ref{Metric: "vanilla-p50-µs"}, BaseName: "vanilla", Unit: "µs",
		Ratio: "p50-ratio"},
	{What: "publish→delivery, 100 subscribers, last subscriber p99", Bench: "BenchmarkFanout/subs=100",
		Ours: "ours-last-p99-µs", Base: Ref{Metric: "vanilla-last-p99-µs"}, BaseName: "vanilla", Unit: "µs",
		Ratio: "last-p99-ratio", Target: AtMost(0.5)},
	{What: "publish→delivery, 1000 subscribers, p50", Bench: "BenchmarkFanout/subs=1000",
		Ours: "ours-p50-µs", Base: Ref{Metric: "vanilla-p50-µs"}, BaseName: "vanilla", Unit: "µs",
		Ratio: "p50-ratio"},
	{What: "publish→delivery, 1000 subscribers, last subscriber p99", Bench: "BenchmarkFanout/subs=1000",
		Ours: "ours-last-p99-µs", Base: Ref{Metric: "vanilla-last-p99-µs"}, BaseName: "vanilla", Unit: "µs",
		Ratio: "last-p99-ratio", Target: AtMost(0.5)},
	{What: "a worker's lease claim publish→OK, sent as the job request arrives, p50", Bench: "BenchmarkClaim",
		Ours: "ours-claim-p50-µs", Base: Ref{Metric: "vanilla-claim-p50-µs"}, BaseName: "vanilla (no lease)", Unit: "µs",
		Ratio: "claim-p50-ratio"},
	{What: "job request write → the worker's claim OK, p50", Bench: "BenchmarkClaim",
		Ours: "ours-request-to-claim-p50-µs", Base: Ref{Metric: "vanilla-request-to-claim-p50-µs"}, BaseName: "vanilla (no lease)", Unit: "µs",
		Ratio: "request-to-claim-p50-ratio"},
	{What: "memory per idle connection", Bench: "BenchmarkIdleConn",
		Ours: "ours-B/conn", Base: Ref{Metric: "vanilla-B/conn"}, BaseName: "vanilla", Unit: "B",
		Ratio: "ratio"},

	// the relay under attack: the e2e hostile suite's honest probe (one connection publishing job
	// requests and lease claims, another following them) under each attack, against the same
	// probe unloaded on the same relay
	hostile("1,000 COUNTs on one connection", "count-flood", "ok"),
	hostile("1,000 COUNTs on one connection", "count-flood", "delivery"),
	hostile("1,100 REQs for large events, never read", "reader-exhaustion", "ok"),
	hostile("1,100 REQs for large events, never read", "reader-exhaustion", "delivery"),
	hostile("a kind 7000 subscriber that stops reading", "slow-reader", "ok"),
	hostile("a kind 7000 subscriber that stops reading", "slow-reader", "delivery"),
	hostile("20,000 REQs on one connection", "many-subscriptions", "ok"),
	hostile("20,000 REQs on one connection", "many-subscriptions", "delivery"),
	hostile("400 REQs of 7,000 ids", "many-ids", "ok"),
	hostile("400 REQs of 7,000 ids", "many-ids", "delivery"),

	// OCR against the Node peer
	ocrPeer("OCR image → text, 10-word line, 1 thread", "threads=1/line"),
	ocrPeer("OCR, 3-line page, 1 thread", "threads=1/page"),
	ocrPeer("OCR, 10-word line, 2 threads", "threads=2/line"),
	ocrPeer("OCR, 3-line page, 2 threads", "threads=2/page"),

	// worker
	{What: "worker OCR job (prepare+run) vs bare Decode+Recognize, 1 thread", Bench: "BenchmarkWorkerOCROverhead",
		Ours: "job-ms", Base: Ref{Metric: "bare-ms"}, BaseName: "bare", Unit: "ms",
		Ratio: "job/bare", Percent: true, Target: AtMost(1.05), Must: []Check{duplicates0}},
	{What: "kind 5800 job request→result vs bare session.Run", Bench: "BenchmarkWorkerOverhead",
		Ours: "job-ms", Base: Ref{Metric: "run-ms"}, BaseName: "session.Run", Unit: "ms",
		Ratio: "ratio"},
	{What: "OCR jobs/s, one worker, in process", Bench: "BenchmarkOCRJobs", Ours: "jobs/s", Unit: "jobs/s"},
	{What: "OCR jobs/s, 1 worker on one relay", Bench: "BenchmarkWorkers/workers=1",
		Ours: "jobs/s", Unit: "jobs/s", Must: []Check{duplicates0}},
	{What: "OCR jobs/s, 2 workers on one relay", Bench: "BenchmarkWorkers/workers=2",
		Ours: "jobs/s", Base: Ref{Bench: "BenchmarkWorkers/workers=1", Metric: "jobs/s"}, BaseName: "1 worker", Unit: "jobs/s",
		Must: []Check{duplicates0}},
	{What: "OCR jobs/s, 4 workers on one relay", Bench: "BenchmarkWorkers/workers=4",
		Ours: "jobs/s", Base: Ref{Bench: "BenchmarkWorkers/workers=1", Metric: "jobs/s"}, BaseName: "1 worker", Unit: "jobs/s",
		Must: []Check{duplicates0}},

	// payments and the market
	nwc("get_info"), nwc("get_balance"), nwc("make_invoice"), nwc("lookup_invoice"),
	nwc("list_transactions"), nwc("pay_invoice"),
	{What: "paid OCR job, request→result", Bench: "BenchmarkPaidJob",
		Ours: "job-ms", Base: Ref{Metric: "inference-ms"}, BaseName: "inference", Unit: "ms"},
	{What: "market overhead per OCR job, unpaid, p50", Bench: "BenchmarkJobOverhead/unpaid",
		Ours: "p50-overhead-ms", Base: Ref{Metric: "inference-ms"}, BaseName: "inference", Unit: "ms"},
	{What: "market overhead per OCR job, unpaid, p99", Bench: "BenchmarkJobOverhead/unpaid",
		Ours: "p99-overhead-ms", Base: Ref{Metric: "inference-ms"}, BaseName: "inference", Unit: "ms"},
	{What: "client post end to end (binary, default quote window), ledger wallet, p50", Bench: "BenchmarkClientPost/ledger",
		Ours: "p50-ms", Base: Ref{Metric: "inference-ms"}, BaseName: "inference", Unit: "ms",
		Diff: true, Target: AtMost(150)},
	paidOverhead("ledger wallet", "ledger", "p50"),
	paidOverhead("ledger wallet", "ledger", "p99"),
	paidOverhead("regtest lnd", "lnd", "p50"),
	paidOverhead("regtest lnd", "lnd", "p99"),
	escrowOverhead("ledger wallet", "ledger", "p50", AtMost(1.2)),
	escrowOverhead("ledger wallet", "ledger", "p99", Cmp{}),
	escrowOverhead("regtest lnd", "lnd", "p50", Cmp{}),
	escrowOverhead("regtest lnd", "lnd", "p99", Cmp{}),

	// streamed jobs: 4 pages, each paid as it is delivered, against bare inference of one page
	streamPart("escrow", "time to first part", "first-part-ms"),
	streamPart("escrow", "each further part", "per-part-ms"),
	streamPart("prepay", "time to first part", "first-part-ms"),
	streamPart("prepay", "each further part", "per-part-ms"),

	// spare cycles: an idle-mode worker (the binary, real /proc sampler) beside its owner
	{What: "owner's CPU-bound workload beside an idle-mode worker fed OCR jobs", Bench: "BenchmarkSpareCycles/owner-busy",
		Ours: "owner-with-ops/s", Base: Ref{Metric: "owner-alone-ops/s"}, BaseName: "owner alone", Unit: "ops/s",
		Ratio: "owner-ratio", Target: AtLeast(0.95)},
	{What: "idle-mode worker's OCR jobs/s, owner idle", Bench: "BenchmarkSpareCycles/owner-idle",
		Ours: "idle-jobs/s", Base: Ref{Metric: "always-jobs/s"}, BaseName: "--when always", Unit: "jobs/s",
		Ratio: "idle-ratio", Target: AtLeast(0.95)},
}

// streamPart is a row of BenchmarkStream: a 4-page OCR stream over the ledger wallet, paid part
// by part by escrow or prepay, the time to its first part (request, quote, payment, inference)
// or between its parts, against bare Decode+Recognize of one page measured in the same run.
func streamPart(pay, what, metric string) Row {
	return Row{What: "stream of 4 OCR pages, " + pay + " over ledger wallet, " + what, Bench: "BenchmarkStream/ledger-" + pay,
		Ours: metric, Base: Ref{Metric: "bare-part-ms"}, BaseName: "bare page", Unit: "ms", Diff: true}
}

// escrowOverhead compares an escrow job's market overhead (hold invoice, sealed result, settle
// after the result is stored) with a prepaid one's over the same wallet, same percentile.
func escrowOverhead(how, sub, pct string, target Cmp) Row {
	return Row{What: "market overhead per OCR job, escrow over " + how + ", " + pct, Bench: "BenchmarkJobOverhead/" + sub + "-escrow",
		Ours: pct + "-overhead-ms", Base: Ref{Bench: "BenchmarkJobOverhead/" + sub, Metric: pct + "-overhead-ms"},
		BaseName: "prepay", Unit: "ms", Target: target}
}

// ingestRate is a row of our ingest rate against vanilla's under one load (8 connections),
// with one verifier library: the untagged runs use btcec, those tagged libsecp256k1 the C library.
func ingestRate(load, bench, verifier, tag string, target Cmp) Row {
	return Row{What: "relay ingest, 8 connections, " + load + ", " + verifier, Bench: bench, Tag: tag,
		Ours: "ours-events/s", Base: Ref{Metric: "vanilla-events/s"}, BaseName: "vanilla", Unit: "ev/s",
		Ratio: "ratio", Target: target}
}

// ingestCPU is a row of our relay's CPU time per accepted event under one load against the
// signature floor measured in the same run with the same verifier library.
func ingestCPU(load, bench, verifier, tag string, target Cmp) Row {
	return Row{What: "relay CPU per accepted event, " + load + ", " + verifier, Bench: bench, Tag: tag,
		Ours: "ours-cpu-µs/event", Base: Ref{Metric: "floor-cpu-µs/event"}, BaseName: "signature floor", Unit: "µs",
		Ratio: "cpu-ratio", Target: target}
}

// leastRelayCPU is a yardstick row of the same run: the CPU per event of the least relay (read
// the frame, parse, check id and signature, write the OK, store nothing: startLeastRelay in
// relay/) under the same load, against the signature floor. What it spends beyond the floor is
// the socket I/O and scheduling no relay avoids under that load.
func leastRelayCPU(load, bench, verifier, tag string) Row {
	return Row{What: "least relay CPU per event (read, parse, verify, OK; nothing stored), " + load + ", " + verifier, Bench: bench, Tag: tag,
		Ours: "least-cpu-µs/event", Base: Ref{Metric: "floor-cpu-µs/event"}, BaseName: "signature floor", Unit: "µs",
		Ratio: "least-cpu-ratio"}
}

// ingestOK is a row of the p99 time from writing an EVENT to reading its OK under one load, as the
// load generator saw it, ours against vanilla's in the same run.
func ingestOK(load, bench, verifier, tag string) Row {
	return Row{What: "publish→OK p99, " + load + ", " + verifier, Bench: bench, Tag: tag,
		Ours: "ours-ok-p99-µs", Base: Ref{Metric: "vanilla-ok-p99-µs"}, BaseName: "vanilla", Unit: "µs",
		Ratio: "ok-p99-ratio"}
}

var duplicates0 = Check{Metric: "duplicates", Cmp: Equal(0), Text: "duplicates 0"}

func ocrPeer(what, sub string) Row {
	return Row{What: what, Bench: "BenchmarkOCRPeer/" + sub,
		Ours: "ours-ms", Base: Ref{Metric: "peer-ms"}, BaseName: "Node peer", Unit: "ms",
		Ratio: "ratio", Target: AtMost(0.6),
		Notes: []Check{{Metric: "peer-exact", Cmp: Equal(1), Text: "the Node peer read a different text"}}}
}

func nwc(method string) Row {
	return Row{What: "NWC " + method + " round trip (ledger wallet, our relay)", Bench: "BenchmarkNWC/" + method,
		Ours: "ms/call", Unit: "ms"}
}

// paidOverhead compares a paid job's market overhead with the unpaid one's, same percentile.
func paidOverhead(how, sub, pct string) Row {
	return Row{What: "market overhead per OCR job, paid over " + how + ", " + pct, Bench: "BenchmarkJobOverhead/" + sub,
		Ours: pct + "-overhead-ms", Base: Ref{Bench: "BenchmarkJobOverhead/unpaid", Metric: pct + "-overhead-ms"},
		BaseName: "unpaid", Unit: "ms"}
}

// hostile is a row of BenchmarkHostile: the probe's p99 publish→OK ("ok") or publish→delivery
// ("delivery") under one attack, against its unloaded p99. The target is the hostile suite's
// 3× (which TestHostile applies above floors of 50 ms and 30 ms); a probe step that failed
// outright fails the row whatever the ratio.
func hostile(attack, sub, metric string) Row {
	what := map[string]string{"ok": "publish→OK", "delivery": "publish→delivery"}[metric]
	return Row{What: "honest probe p99 " + what + " under " + attack, Bench: "BenchmarkHostile/" + sub,
		Ours: "loaded-p99-" + metric + "-ms", Base: Ref{Metric: "unloaded-p99-" + metric + "-ms"}, BaseName: "unloaded", Unit: "ms",
		Ratio: "p99-" + metric + "-x", Target: AtMost(3),
		Must: []Check{{Metric: "probe-failures", Cmp: Equal(0), Text: "no failed probe step"}}}
}
