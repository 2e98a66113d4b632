package ocr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// peerDir is the Node project of the peer OCR this package is compared with:
// @gutenye/ocr-node 1.4.8 on onnxruntime-node 1.24.1 (bench/ocrpeer).
var peerDir = filepath.Join("..", "..", "bench", "ocrpeer")

// peerReport is what bench/ocrpeer/peer.mjs prints.
type peerReport struct {
	Peer    string  `json:"peer"`
	Threads int     `json:"threads"`
	LoadMs  float64 `json:"load_ms"`
	Images  []struct {
		Path     string    `json:"path"`
		MedianMs float64   `json:"median_ms"`
		TimesMs  []float64 `json:"times_ms"`
		Text     string    `json:"text"`
	} `json:"images"`
}

// installPeer runs npm install in bench/ocrpeer unless the peer is already there. The
// onnxruntime-node install script, which downloads CUDA files, is skipped: the CPU library
// ships in the package.
func installPeer(b *testing.B) {
	b.Helper()
	if _, err := os.Stat(filepath.Join(peerDir, "node_modules", "@gutenye", "ocr-node", "package.json")); err == nil {
		return
	}
	if _, err := exec.LookPath("npm"); err != nil {
		b.Skip("npm is not installed: the Node peer cannot be installed")
	}
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund")
	cmd.Dir = peerDir
	cmd.Env = append(os.Environ(), "ONNXRUNTIME_NODE_INSTALL=skip")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("npm install in %s: %v\n%s", peerDir, err, out)
	}
}

// runPeer runs the Node peer on files with threads intra-op threads, runs timed runs per file.
func runPeer(b *testing.B, threads, runs int, files ...string) peerReport {
	b.Helper()
	models, err := filepath.Abs(modelsDir(b))
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"peer.mjs", "--threads", strconv.Itoa(threads), "--runs", strconv.Itoa(runs), "--warmup", "2", "--models", models}
	cmd := exec.Command("node", append(args, files...)...)
	cmd.Dir = peerDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.String()
		if i := strings.LastIndex(msg, "\n\n"); i >= 0 { // opencv.js prints its whole source above a stack trace
			msg = msg[i:]
		}
		b.Fatalf("node peer.mjs: %v%s", err, msg)
	}
	var rep peerReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		b.Fatalf("peer output: %v: %.300s", err, stdout.String())
	}
	if len(rep.Images) != len(files) {
		b.Fatalf("peer read %d images, want %d", len(rep.Images), len(files))
	}
	return rep
}

func medianMs(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}

// BenchmarkOCRPeer reads the same PNG files (a 10-word line and a 3-line page, 32px) with
// our pipeline (file bytes → Decode → Recognize) and with the Node peer @gutenye/ocr-node
// 1.4.8 on onnxruntime-node 1.24.1, both with 1 and 2 intra-op threads per session, spinning
// off, inter-op 1. For each image the peer runs between two halves of our runs of it, so
// machine noise falls on both. It reports the medians and ours/peer (the goal is ≤ 0.6); our
// text must be exact. The peer is installed on first use (npm, bench/ocrpeer).
// SPARECYCLES_PEER_RUNS sets the timed runs per image for the peer (default 20); ours are b.N
// (run with -benchtime 20x).
func BenchmarkOCRPeer(b *testing.B) {
	if _, err := exec.LookPath("node"); err != nil {
		b.Skip("node is not installed")
	}
	installPeer(b)
	runs := 20
	if s := os.Getenv("SPARECYCLES_PEER_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("SPARECYCLES_PEER_RUNS=%q", s)
		}
		runs = n
	}
	dir := b.TempDir()
	cases := []struct {
		name  string
		lines []string
		file  string
	}{
		{"line", []string{tenWords}, ""},
		{"page", page, ""},
	}
	for i := range cases {
		cases[i].file = filepath.Join(dir, cases[i].name+".png")
		if err := os.WriteFile(cases[i].file, render(b, 32, cases[i].lines...), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := loadModel(b, threads)
			read := func(file string) (string, time.Duration) {
				t0 := time.Now()
				data, err := os.ReadFile(file)
				if err != nil {
					b.Fatal(err)
				}
				img, _, err := Decode(data, 16_000_000)
				if err != nil {
					b.Fatal(err)
				}
				res, err := m.Recognize(b.Context(), img)
				if err != nil {
					b.Fatal(err)
				}
				return res.Text, time.Since(t0)
			}
			for _, c := range cases { // warm up as the peer does
				read(c.file)
				read(c.file)
			}
			for _, c := range cases {
				want := strings.Join(c.lines, "\n")
				b.Run(c.name, func(b *testing.B) {
					var times []time.Duration
					var peer peerReport
					peerRan := false
					k := 0
					for b.Loop() {
						if k == b.N/2 { // the peer reads this image mid-way through our runs of it
							peer, peerRan = runPeer(b, threads, runs, c.file), true
						}
						text, d := read(c.file)
						if text != want {
							b.Fatalf("read %q, want %q", text, want)
						}
						times = append(times, d)
						k++
					}
					if !peerRan {
						peer = runPeer(b, threads, runs, c.file)
					}
					ours, theirs := medianMs(times), peer.Images[0].MedianMs
					exact := 0.0
					if peer.Images[0].Text == want {
						exact = 1
					}
					b.ReportMetric(ours, "ours-ms")
					b.ReportMetric(theirs, "peer-ms")
					b.ReportMetric(ours/theirs, "ratio")
					b.ReportMetric(exact, "peer-exact")
					if exact == 0 {
						b.Logf("peer read %q, want %q", peer.Images[0].Text, want)
					}
				})
			}
		})
	}
}
