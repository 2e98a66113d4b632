package ocr

import "time"

// stage is one step of Recognize, as a trace times it.
type stage int

const (
	stageDetInput stage = iota // scale the image for the detector, normalise it into the input tensor
	stageDetRun                // the detector's session.Run
	stageBoxes                 // probability map → boxes
	stageCrops                 // cut (and turn) each box out of the image
	stageRecInput              // scale each crop to height 48, normalise it into the batch tensor
	stageRecRun                // the recogniser's session.Run
	stageDecode                // CTC decoding, the best reading per box, reading order
	numStages
)

var stageNames = [numStages]string{"det-input", "det-run", "boxes", "crops", "rec-input", "rec-run", "ctc"}

// trace times the stages of one Recognize call: each mark adds the wall time since the last
// mark to a stage, and with cpu set, the time by that clock too (a thread's CPU time, say). A
// nil *trace (Recognize's) does nothing.
type trace struct {
	cpu     func() time.Duration
	last    time.Time
	lastCPU time.Duration
	d, dCPU [numStages]time.Duration
}

func (t *trace) begin() {
	if t == nil {
		return
	}
	t.last = time.Now()
	if t.cpu != nil {
		t.lastCPU = t.cpu()
	}
}

func (t *trace) mark(s stage) {
	if t == nil {
		return
	}
	now := time.Now()
	t.d[s] += now.Sub(t.last)
	t.last = now
	if t.cpu != nil {
		c := t.cpu()
		t.dCPU[s] += c - t.lastCPU
		t.lastCPU = c
	}
}
