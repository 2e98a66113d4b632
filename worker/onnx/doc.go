// Package onnx is the worker's one home of ONNX Runtime (through github.com/yalue/onnxruntime_go):
// it loads the shared library, picks an execution provider, and runs models on tensors that are
// plain Go values.
//
// A process opens one [Runtime] (ONNX Runtime's environment is process-wide; runtimes opened
// together share it and must name the same library), then one [Session] per model, created once
// and reused. [Session.Run] checks its inputs against the model's declared names, dtypes and
// shapes before anything reaches ONNX Runtime, so a bad tensor from a client is an error value,
// never a crash.
//
// The library is ONNX Runtime 1.24.1 for linux x64. scripts/fetch-onnxruntime puts it where
// [FindLibrary] looks by default.
//
// Threads: each session has its own intra-op thread pool of [RuntimeConfig.Threads] threads.
// Spin-waiting is turned off in every pool: with two sessions run back to back on a small
// machine, an idle pool spinning steals the core the busy one needs (det then rec ran 2–3×
// slower with spinning on, on 2 cores). Spinning only while a run lasts
// (session.force_spinning_stop) gained 5–10% at 2 threads on an idle machine but lost 20–30%
// with another process busy on one of the 2 cores, so it stays off.
//
// Devices: "cpu" uses the CPU execution provider; "cuda" requires the CUDA execution provider
// and fails with [ErrNoCUDA] when it cannot be added; "auto" tries CUDA and falls back to the
// CPU with a warning. The CPU build that scripts/fetch-onnxruntime installs has no CUDA provider,
// so "auto" means CPU there.
package onnx
