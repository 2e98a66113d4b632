// peer.mjs — time the Node OCR peer (@gutenye/ocr-node 1.4.8 on onnxruntime-node 1.24.1) on image files.
//
//   node peer.mjs [--threads N] [--runs K] [--warmup W] [--models DIR] image...
//
// Both sessions get N intra-op threads, 1 inter-op thread and spinning off (as the Go worker's
// sessions do); sharp (libvips) gets N threads too. Each image is read W times to warm up, then
// timed K times, file path → text. Prints one JSON object: per image the median and all times in
// ms and the text read (lines joined by "\n").
import path from 'node:path'
import Ocr from '@gutenye/ocr-node'
import sharp from 'sharp'

const args = process.argv.slice(2)
const opt = { threads: 1, runs: 10, warmup: 2, models: '' }
const images = []
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a.startsWith('--')) {
    const key = a.slice(2)
    if (!(key in opt)) throw new Error(`unknown flag ${a}`)
    opt[key] = typeof opt[key] === 'number' ? Number(args[++i]) : args[++i]
  } else {
    images.push(a)
  }
}
if (images.length === 0) {
  console.error('usage: node peer.mjs [--threads N] [--runs K] [--warmup W] [--models DIR] image...')
  process.exit(2)
}

sharp.concurrency(opt.threads)
const onnxOptions = {
  intraOpNumThreads: opt.threads,
  interOpNumThreads: 1,
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
}
const models = opt.models
  ? {
      detectionPath: path.resolve(opt.models, 'ch_PP-OCRv4_det_infer.onnx'),
      recognitionPath: path.resolve(opt.models, 'ch_PP-OCRv4_rec_infer.onnx'),
      dictionaryPath: path.resolve(opt.models, 'ppocr_keys_v1.txt'),
    }
  : undefined
const t0 = performance.now()
const ocr = await Ocr.create({ models, onnxOptions })
const loadMs = performance.now() - t0

const read = async (file) => (await ocr.detect(file)).map((l) => l.text).join('\n')
const out = { peer: '@gutenye/ocr-node@1.4.8', threads: opt.threads, runs: opt.runs, load_ms: loadMs, images: [] }
for (const file of images) {
  let text = ''
  for (let i = 0; i < opt.warmup; i++) text = await read(file)
  const times = []
  for (let i = 0; i < opt.runs; i++) {
    const s = performance.now()
    text = await read(file)
    times.push(performance.now() - s)
  }
  const sorted = [...times].sort((a, b) => a - b)
  out.images.push({ path: file, median_ms: sorted[Math.floor(sorted.length / 2)], times_ms: times, text })
}
console.log(JSON.stringify(out))
