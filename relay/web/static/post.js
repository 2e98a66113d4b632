// post.js — the market page's "post a job" form: sign a NIP-90 request in the browser, collect
// the workers' quotes, check the chosen one as the Go client does (client/client.go,
// client/escrow.go, client/payments.go), pay it through the customer's NIP-47 wallet (or
// WebLN), and show the result. Escrow quotes (nips/escrow.md) are preferred: the payment is
// locked while the worker runs, and the preimage that settles it opens the sealed result.
//
// Every event here comes from a stranger: peer data is written with textContent only, every
// event is signature-checked (SCNostr.Relay does), and only the worker paid is listened to.
// Everything is bounded: one job at a time, at most JOB_TIMEOUT_MS, and its sockets,
// subscriptions and timers are closed when it ends.
;(function () {
  'use strict'

  const $ = (id) => document.getElementById(id)
  const form = $('post-form')
  if (!form) return

  const S = window.SCNostr

  const KEY_STORE = 'sparecycles.key' // the local signing key (hex), when there is no NIP-07 extension
  const NWC_STORE = 'sparecycles.nwc' // the NWC URI, only when "keep in local storage" is checked
  const PAID_STORE = 'sparecycles.paid' // payment hashes paid or being paid: never paid twice
  const PAID_KEEP = 500 // payment hashes remembered

  const JOB_TIMEOUT_MS = 5 * 60 * 1000 // a whole job, from posting to the result
  const QUOTE_WINDOW_MS = 3000 // quotes collected before choosing
  const NO_QUOTE_MS = 60 * 1000 // no quote at all by then: give up
  const CONNECT_MS = 10000
  const OK_MS = 10000
  const FAILURE_GRACE_MS = 5000 // after a failed escrow payment, for the worker's reason
  const MIN_INVOICE_LIFE_S = 10
  const FEEDBACK_KIND = 7000
  const MAX_INLINE = 60 * 1024 // a data: URL's longest (client/cmd/client: relays index tag values up to 64 KiB)
  const SEAL = 'xchacha20poly1305'
  const ESCROW_SALT = 'sparecycles-escrow-v1'
  const MAX_SETTLE_WINDOW_S = 86400
  const MAX_PARTS = 20 // images in one stream
  const STREAM_MAX_PAYING = 8 // part payments in flight at once (client/stream.go)
  const RESULT_GRACE_MS = 5000 // after the last part, for the final result (it only repeats the parts)

  const enc = new TextEncoder()
  // window.URL under another name: relay/web's asset check takes the word URL followed by a parenthesis for CSS
  const URLParser = window.URL
  const dec = new TextDecoder()

  // ---- small helpers ----

  function setText(id, text) {
    const el = $(id)
    if (el) el.textContent = text
  }

  function store(k, v) {
    try {
      if (v === null) localStorage.removeItem(k)
      else localStorage.setItem(k, v)
      return true
    } catch {
      return false
    }
  }

  function load(k) {
    try {
      return localStorage.getItem(k)
    } catch {
      return null
    }
  }

  function sats(msat) {
    return msat % 1000 === 0 ? msat / 1000 + ' sats' : (msat / 1000).toFixed(3) + ' sats'
  }

  function shortKey(hex) {
    try {
      const npub = S.nip19.npubEncode(hex)
      return npub.slice(0, 12) + '…' + npub.slice(-4)
    } catch {
      return String(hex).slice(0, 12) + '…'
    }
  }

  function isHex(s, n) {
    return typeof s === 'string' && s.length === n && /^[0-9a-f]+$/.test(s)
  }

  function tag(evt, name) {
    if (!evt || !Array.isArray(evt.tags)) return null
    for (const t of evt.tags) if (Array.isArray(t) && t[0] === name) return t
    return null
  }

  function tagsNamed(evt, name) {
    return Array.isArray(evt.tags) ? evt.tags.filter((t) => Array.isArray(t) && t[0] === name) : []
  }

  function now() {
    return Math.floor(Date.now() / 1000)
  }

  function b64ToBytes(s) {
    const bin = atob(s)
    const out = new Uint8Array(bin.length)
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
    return out
  }

  // ---- signer: a NIP-07 extension, else a key kept in this browser's local storage ----

  let memoryKey = null // when local storage is unavailable

  function localSecret(create) {
    let hex = load(KEY_STORE) || memoryKey
    if (!isHex(hex || '', 64)) {
      if (!create) return null
      hex = S.bytesToHex(S.generateSecretKey())
      if (!store(KEY_STORE, hex)) memoryKey = hex
    }
    return S.hexToBytes(hex)
  }

  function hasExtension() {
    return !!(window.nostr && typeof window.nostr.signEvent === 'function' && typeof window.nostr.getPublicKey === 'function')
  }

  function showSigner() {
    const reset = $('key-reset')
    if (hasExtension()) {
      setText('signer-status', 'Your browser extension (NIP-07) signs the job; it may ask you to allow it.')
      setText('signer-pubkey', '– (shown once the extension signs)')
      if (reset) reset.hidden = true
      return
    }
    const sk = localSecret(true)
    const where = load(KEY_STORE)
      ? "Signed with a key kept in this browser's local storage — anyone with access to this browser profile can use it."
      : "Signed with a key kept only in this page's memory (local storage is unavailable): it is gone when you leave."
    setText('signer-status', where)
    setText('signer-pubkey', S.nip19.npubEncode(S.getPublicKey(sk)))
    if (reset) reset.hidden = false
  }

  async function signer() {
    if (hasExtension()) {
      const pubkey = await window.nostr.getPublicKey()
      if (!isHex(pubkey, 64)) throw new Error('the NIP-07 extension gave no public key')
      setText('signer-pubkey', S.nip19.npubEncode(pubkey))
      return {
        pubkey,
        sign: async (t) => {
          const e = await window.nostr.signEvent(t)
          if (!e || e.pubkey !== pubkey || !S.verifyEvent({ id: e.id, pubkey: e.pubkey, created_at: e.created_at, kind: e.kind, tags: e.tags, content: e.content, sig: e.sig })) {
            throw new Error('the NIP-07 extension returned an event that does not verify')
          }
          return e
        },
      }
    }
    const sk = localSecret(true)
    return { pubkey: S.getPublicKey(sk), sign: async (t) => S.finalizeEvent(t, sk) }
  }

  // ---- wallet: NIP-47 (Nostr Wallet Connect), else WebLN ----

  // parseNWC reads a nostr+walletconnect:// URI (nips/nip47/uri.go); errors never quote the secret.
  function parseNWC(s) {
    s = String(s || '').trim()
    const m = /^nostr\+walletconnect:(?:\/\/)?([^?#]*)\??([^#]*)/i.exec(s)
    if (!m) throw new Error('not a nostr+walletconnect:// URI')
    const walletPubkey = m[1].replace(/\/$/, '').toLowerCase()
    if (!isHex(walletPubkey, 64)) throw new Error("the wallet's public key is not 64 hex characters")
    let q
    try {
      q = new URLSearchParams(m[2])
    } catch {
      throw new Error('malformed connection URI')
    }
    const relays = q.getAll('relay').map((r) => r.trim())
    if (relays.length === 0) throw new Error('the URI names no relay')
    for (const r of relays) {
      let u
      try {
        u = new URLParser(r)
      } catch {
        throw new Error('a relay of the URI is not a URL')
      }
      if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error('a relay of the URI is not ws:// or wss://')
    }
    const secret = (q.get('secret') || '').trim().toLowerCase()
    if (!secret) throw new Error('the URI has no secret')
    if (!isHex(secret, 64)) throw new Error('the secret is not 64 hex characters')
    let clientPubkey
    try {
      clientPubkey = S.getPublicKey(S.hexToBytes(secret))
    } catch {
      throw new Error('the secret is not a valid key')
    }
    return { walletPubkey, relays, secret: S.hexToBytes(secret), clientPubkey }
  }

  class WalletError extends Error {
    constructor(code, message) {
      super(message ? code + ': ' + message : code)
      this.code = code
    }
  }

  // NWC talks to one wallet service over the relays of its URI (nips/nip47/client.go): NIP-44 v2
  // when the wallet's info event lists nip44_v2 in its encryption tag, else NIP-04; requests
  // are kind 23194, answers kind 23195.
  class NWC {
    constructor(uri, track) {
      this.uri = uri
      this.track = track // registers a closer with the job
      this.relay = null
      this.scheme = ''
      this.methods = []
    }

    async open() {
      let last = null
      for (const url of this.uri.relays) {
        const r = new S.Relay(url)
        this.track(() => r.close())
        try {
          await r.connect(CONNECT_MS)
          this.relay = r
          break
        } catch (e) {
          last = e
          r.close()
        }
      }
      if (!this.relay) throw new Error("cannot reach the wallet's relay: " + (last ? last.message : 'none'))
      const info = await this.info()
      const encs = (info.encryption || '').split(/\s+/).filter(Boolean)
      if (encs.length === 0) encs.push('nip04') // no tag: NIP-04 only
      this.scheme = encs.includes('nip44_v2') ? 'nip44_v2' : encs.includes('nip04') ? 'nip04' : ''
      this.methods = info.methods
      if (!this.scheme) throw new Error('the wallet offers no encryption this page speaks (' + encs.join(', ') + ')')
      if (!this.methods.includes('pay_invoice')) throw new Error('this wallet connection may not pay invoices (no pay_invoice)')
    }

    info() {
      return new Promise((resolve, reject) => {
        let done = false
        let sub = null
        const finish = (fn, v) => {
          if (done) return
          done = true
          clearTimeout(timer)
          if (sub) sub.close()
          fn(v)
        }
        const timer = setTimeout(() => finish(reject, new Error('the wallet published no info event (kind 13194) on its relay')), CONNECT_MS)
        sub = this.relay.subscribe([{ kinds: [13194], authors: [this.uri.walletPubkey], limit: 1 }], {
          onevent: (e) => {
            if (e.kind !== 13194 || e.pubkey !== this.uri.walletPubkey) return
            const t = tag(e, 'encryption')
            finish(resolve, { methods: String(e.content || '').split(/\s+/).filter(Boolean), encryption: t ? String(t[1] || '') : '' })
          },
          oneose: () => {
            // stored events come before EOSE: none means the wallet is not on this relay
            setTimeout(() => finish(reject, new Error("the wallet has no info event (kind 13194) on its relay: is it running?")), 500)
          },
          onclosed: (why) => finish(reject, new Error("the wallet's relay closed the request: " + why)),
        })
      })
    }

    encrypt(text) {
      if (this.scheme === 'nip44_v2') return S.nip44.encrypt(text, S.nip44.getConversationKey(this.uri.secret, this.uri.walletPubkey))
      return S.nip04.encrypt(this.uri.secret, this.uri.walletPubkey, text)
    }

    decrypt(text) {
      if (this.scheme === 'nip44_v2') return S.nip44.decrypt(text, S.nip44.getConversationKey(this.uri.secret, this.uri.walletPubkey))
      return S.nip04.decrypt(this.uri.secret, this.uri.walletPubkey, text)
    }

    // call sends method with params and resolves with its result; rejects with a WalletError
    // for the wallet's error, or an Error when no answer came within timeoutMs.
    call(method, params, timeoutMs) {
      return new Promise((resolve, reject) => {
        const expires = now() + Math.ceil(timeoutMs / 1000)
        const req = S.finalizeEvent(
          {
            kind: 23194,
            created_at: now(),
            tags: [['p', this.uri.walletPubkey], ['encryption', this.scheme], ['expiration', String(expires)]],
            content: this.encrypt(JSON.stringify({ method, params: params || {} })),
          },
          this.uri.secret,
        )
        let done = false
        let sub = null
        const finish = (fn, v) => {
          if (done) return
          done = true
          clearTimeout(timer)
          if (sub) sub.close()
          fn(v)
        }
        const timer = setTimeout(() => finish(reject, new Error('the wallet did not answer ' + method + ' within ' + Math.round(timeoutMs / 1000) + ' s')), timeoutMs)
        this.track(() => finish(reject, new Error('stopped')))
        // subscribe before publishing: answers are ephemeral
        sub = this.relay.subscribe([{ kinds: [23195], authors: [this.uri.walletPubkey], '#e': [req.id] }], {
          onevent: (e) => {
            if (e.kind !== 23195 || e.pubkey !== this.uri.walletPubkey || !tagsNamed(e, 'e').some((t) => t[1] === req.id)) return
            let res
            try {
              res = JSON.parse(this.decrypt(e.content))
            } catch {
              return // not for us to read; the real answer may still come
            }
            if (!res || typeof res !== 'object') return
            if (res.error) {
              finish(reject, new WalletError(String(res.error.code || 'ERROR'), String(res.error.message || '')))
              return
            }
            if (res.result_type !== method) {
              finish(reject, new Error('the wallet answered ' + String(res.result_type) + ' to ' + method))
              return
            }
            finish(resolve, res.result || {})
          },
          onclosed: (why) => finish(reject, new Error("the wallet's relay ended the wait: " + why)),
        })
        this.relay.publish(req, OK_MS).then((ok) => {
          if (!ok.ok) finish(reject, new Error("the wallet's relay refused the request: " + ok.message + (/^mute:/.test(ok.message) ? ' (the wallet service is not listening: is it running?)' : '')))
        })
      })
    }
  }

  let nwcURI = null // the parsed URI in memory; the text stays in the input

  function walletChoice() {
    const text = ($('nwc-uri') && $('nwc-uri').value.trim()) || ''
    if (text) return { kind: 'nwc', uri: parseNWC(text) }
    if (window.webln && typeof window.webln.sendPayment === 'function') return { kind: 'webln' }
    return null
  }

  function showWallet() {
    const input = $('nwc-uri')
    const text = (input && input.value.trim()) || ''
    nwcURI = null
    if (input) input.removeAttribute('aria-invalid')
    if (text) {
      try {
        nwcURI = parseNWC(text)
        let host = nwcURI.relays[0]
        try {
          host = new URLParser(host).host
        } catch {
          // shown as it is
        }
        setText('webln-status', 'Pays with Nostr Wallet Connect: wallet ' + shortKey(nwcURI.walletPubkey) + ' via ' + host + '. The URI stays in this page' + ($('nwc-remember') && $('nwc-remember').checked ? " and this browser's local storage" : ' (memory only)') + '; only encrypted requests go to the wallet.')
      } catch (e) {
        if (input) input.setAttribute('aria-invalid', 'true')
        setText('webln-status', 'That is not a usable wallet connection URI: ' + e.message + '.')
      }
      return
    }
    if (window.webln && typeof window.webln.sendPayment === 'function') {
      setText('webln-status', "Pays with WebLN: your browser's Lightning extension (no NWC URI given).")
    } else {
      setText('webln-status', 'No wallet yet: paste a Nostr Wallet Connect URI, or use a browser with a WebLN extension.')
    }
  }

  // ---- payments remembered: a payment hash is never paid twice from this browser ----

  function paidMap() {
    try {
      const m = JSON.parse(load(PAID_STORE) || '{}')
      return m && typeof m === 'object' ? m : {}
    } catch {
      return {}
    }
  }

  function markPaid(hash, job, state) {
    const m = paidMap()
    m[hash] = { job, state, at: now() }
    const keys = Object.keys(m)
    if (keys.length > PAID_KEEP) {
      keys.sort((a, b) => (m[a].at || 0) - (m[b].at || 0))
      for (const k of keys.slice(0, keys.length - PAID_KEEP)) delete m[k]
    }
    return store(PAID_STORE, JSON.stringify(m))
  }

  // ---- the relay's limits ----

  function marketInfo() {
    const M = window.Market
    if (M && M.info) return Promise.resolve(M.info)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        document.removeEventListener('market:info', on)
        // app.js did not say: ask the relay (NIP-11) ourselves
        const ctl = new AbortController()
        const t2 = setTimeout(() => ctl.abort(), 5000)
        fetch('/', { headers: { Accept: 'application/nostr+json' }, signal: ctl.signal })
          .then((r) => (r.ok ? r.json() : {}))
          .catch(() => ({}))
          .then((doc) => {
            clearTimeout(t2)
            resolve(doc || {})
          })
      }, 5000)
      const on = (ev) => {
        clearTimeout(timer)
        document.removeEventListener('market:info', on)
        resolve((ev && ev.detail) || (window.Market && window.Market.info) || {})
      }
      document.addEventListener('market:info', on)
    })
  }

  function relayAddress() {
    if (window.Market && window.Market.relayURL) return window.Market.relayURL
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/'
  }

  // eventBudget is the most bytes the request may take: it must fit the relay's limits, and
  // leave room for the worker's result, which carries the whole request in its "request" tag.
  function eventBudget(info) {
    let limit = Number(info && info.max_event_bytes) || 256 * 1024
    const msg = Number(info && info.limitation && info.limitation.max_message_length)
    if (msg > 0) limit = Math.min(limit, msg - 16)
    return Math.floor(limit / 2) - 1024
  }

  function sizeOf(template, pubkey) {
    const e = Object.assign({ id: '0'.repeat(64), pubkey: pubkey || '0'.repeat(64), sig: '0'.repeat(128) }, template)
    return enc.encode(JSON.stringify(e)).length
  }

  // ---- the input ----

  let droppedFiles = null // files dropped on #post-drop when the file input cannot take them

  // dataLink reads a blob into a data: URL (base64).
  async function dataLink(blob) {
    const bytes = new Uint8Array(await blob.arrayBuffer())
    let bin = ''
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000))
    return 'data:' + blob.type + ';base64,' + btoa(bin)
  }

  function canvasBlob(canvas, type, quality) {
    return new Promise((resolve) => canvas.toBlob(resolve, type, quality))
  }

  // imageInput turns the file into a data: URL that fits `fits`: as it is when it does (PNG or
  // JPEG), else re-encoded and scaled down on a canvas, step by step.
  async function imageInput(file, fits, say) {
    if (!/^image\//.test(file.type || '')) throw new Error('the file is not an image (' + (file.type || 'unknown type') + ')')
    if (file.type === 'image/png' || file.type === 'image/jpeg') {
      if (file.size <= MAX_INLINE) {
        const d = await dataLink(file)
        if (fits(d)) return d
      }
    }
    say('the image is too large to send as it is: re-encoding it to fit the relay’s limit')
    let img
    try {
      img = await createImageBitmap(file)
    } catch {
      throw new Error('the file is not an image this browser can read')
    }
    try {
      const canvas = document.createElement('canvas')
      const ctx = canvas.getContext('2d')
      for (const scale of [1, 0.85, 0.7, 0.55, 0.42, 0.32, 0.25]) {
        const w = Math.max(1, Math.round(img.width * scale))
        const h = Math.max(1, Math.round(img.height * scale))
        if (w < 200 && scale < 1) break // smaller than this, the text is unreadable
        canvas.width = w
        canvas.height = h
        ctx.fillStyle = '#fff' // JPEG has no transparency
        ctx.fillRect(0, 0, w, h)
        ctx.drawImage(img, 0, 0, w, h)
        for (const [type, q] of [['image/png'], ['image/jpeg', 0.9], ['image/jpeg', 0.75]]) {
          const blob = await canvasBlob(canvas, type, q)
          if (!blob || blob.type !== type) continue
          const d = await dataLink(blob)
          if (d.length <= MAX_INLINE && fits(d)) return d
        }
      }
    } finally {
      img.close()
    }
    throw new Error('the image does not fit in a job request even scaled down (' + Math.round(MAX_INLINE / 1024) + ' KiB at most): use a smaller image or an image URL')
  }

  // ---- progress display ----

  const STAGES = ['quotes', 'quote', 'paid', 'processing', 'parts', 'done']

  function stageEl(name) {
    const ol = $('post-stages')
    return ol ? ol.querySelector('li[data-stage="' + name + '"]') : null
  }

  let stageLabels = null

  function resetStages() {
    if (!stageLabels) {
      stageLabels = {}
      for (const s of STAGES) {
        const li = stageEl(s)
        if (li) stageLabels[s] = li.textContent
      }
    }
    for (const s of STAGES) {
      const li = stageEl(s)
      if (!li) continue
      li.classList.remove('done', 'error')
      li.removeAttribute('aria-current')
      if (stageLabels[s] !== undefined) li.textContent = stageLabels[s]
    }
    const parts = stageEl('parts')
    if (parts) parts.hidden = true // one input: no parts
  }

  function setStage(name, label) {
    const i = STAGES.indexOf(name)
    for (let k = 0; k < STAGES.length; k++) {
      const li = stageEl(STAGES[k])
      if (!li) continue
      if (k < i && !li.hidden) {
        li.classList.add('done')
        li.removeAttribute('aria-current')
      } else if (k === i) {
        if (label) li.textContent = label
        if (name === 'done') {
          li.classList.add('done')
          li.removeAttribute('aria-current')
        } else li.setAttribute('aria-current', 'step')
      }
    }
  }

  function failStage() {
    for (const s of STAGES) {
      const li = stageEl(s)
      if (li && li.getAttribute('aria-current') === 'step') {
        li.classList.add('error')
        li.removeAttribute('aria-current')
      }
    }
  }

  function status(text) {
    setText('post-status', text)
  }

  function showError(text) {
    setText('post-error', text)
    const progress = $('post-progress')
    const el = $('post-error')
    if (text && progress && progress.hidden && el && progress.contains(el)) progress.hidden = false
  }

  // ---- checking a quote (client.watch.refuse, internal/invoice.Check, client.checkEscrow) ----

  // checkQuote returns the problem with q, or '' when it may be paid.
  function checkQuote(q, job, bidMsat, network, description) {
    if (!q.bolt11) return 'no invoice (a post-pay offer, which this page does not take)'
    if (q.escrowErr) return 'escrow quote refused: ' + q.escrowErr
    let inv
    try {
      inv = S.bolt11(q.bolt11)
    } catch (e) {
      return 'not a valid BOLT11 invoice'
    }
    q.invoice = inv
    if (!(inv.msat > 0)) return 'the invoice has no amount'
    if (inv.msat > bidMsat) return 'asks ' + sats(inv.msat) + ', above the bid of ' + sats(bidMsat)
    if (q.msat > 0 && inv.msat !== q.msat) return 'the invoice says ' + sats(inv.msat) + ', the quote ' + sats(q.msat)
    if (network && networkOf(inv.network) !== network) return 'the invoice is for ' + networkOf(inv.network) + ', the wallet is on ' + network
    if (inv.timestamp + inv.expiry <= now() + MIN_INVOICE_LIFE_S) return 'the invoice has expired'
    const want = description || 'sparecycles job ' + job
    if (inv.description) {
      if (inv.description !== want) return 'the invoice’s description does not name this job'
    } else if (inv.descriptionHash !== S.bytesToHex(S.sha256(enc.encode(want)))) {
      return 'the invoice’s description does not name this job'
    }
    if (!isHex(inv.paymentHash, 64)) return 'the invoice has no payment hash'
    if (q.escrow && q.escrow.paymentHash !== inv.paymentHash) return 'escrow quote refused: the invoice’s payment hash is not the escrow tag’s'
    return ''
  }

  function networkOf(prefix) {
    return { bc: 'mainnet', tb: 'testnet', tbs: 'signet', bcrt: 'regtest', sb: 'simnet' }[String(prefix).toLowerCase()] || String(prefix)
  }

  // parseEscrowQuote reads a quote's ["escrow", seal, hash, window] (nips/escrow ParseQuote).
  function parseEscrowQuote(evt) {
    const ts = tagsNamed(evt, 'escrow')
    if (ts.length === 0) return { escrow: null }
    if (ts.length > 1) return { escrowErr: 'more than one escrow tag' }
    const t = ts[0]
    if (t[1] !== SEAL) return { escrowErr: 'unknown seal ' + JSON.stringify(String(t[1]).slice(0, 20)) }
    if (!isHex(t[2], 64)) return { escrowErr: 'the payment hash is not 64 hex characters' }
    const secs = Number(t[3])
    if (!Number.isInteger(secs) || secs <= 0 || secs > MAX_SETTLE_WINDOW_S) return { escrowErr: 'the settle window is not 1..86400 seconds' }
    return { escrow: { paymentHash: t[2], settleWindow: secs } }
  }

  // openSealed opens an escrow result with the preimage (nips/escrow.md, seal xchacha20poly1305).
  // For a stream's part the context is "<job id>:<k>" in place of the job id (nips/stream.md).
  function openSealed(preimageHex, jobID, payload) {
    const p = S.hexToBytes(preimageHex)
    const key = S.hkdf(p, enc.encode(ESCROW_SALT), enc.encode(jobID), 32)
    const raw = b64ToBytes(String(payload).trim())
    if (raw.length < 1 + 24 + 16 || raw[0] !== 1) throw new Error('the sealed result is not version 1')
    return dec.decode(S.xchacha20poly1305(key, raw.subarray(1, 25), enc.encode(jobID)).decrypt(raw.subarray(25)))
  }

  // payOnce pays q's invoice through the NWC wallet (or WebLN) unless this browser paid or tried
  // to pay its payment hash before: the attempt is recorded first, so it is never paid twice.
  // cb.ok(preimage) when paid (the preimage checked against the hash); cb.failed(message) when
  // the wallet said it failed. No answer in time (the payment may be in flight) fails the job.
  function payOnce(job, nwc, q, jobID, cb) {
    const hash = q.invoice.paymentHash
    const before = paidMap()[hash]
    if (before) {
      fail(job, 'this browser already paid (or tried to pay) invoice ' + hash + ' for job ' + before.job + ': it is never paid twice')
      return
    }
    if (!markPaid(hash, jobID, 'paying')) {
      fail(job, 'cannot record the payment in local storage, so it is not made (it could be paid twice)')
      return
    }
    const left = Math.max(1000, JOB_TIMEOUT_MS - (Date.now() - job.started))
    const p = nwc ? nwc.call('pay_invoice', { invoice: q.bolt11 }, left) : window.webln.sendPayment(q.bolt11)
    p.then(
      (res) => {
        if (job.ended) return
        const pre = String((res && res.preimage) || '').toLowerCase()
        if (!isHex(pre, 64) || S.bytesToHex(S.sha256(S.hexToBytes(pre))) !== hash) {
          fail(job, 'the wallet’s preimage does not match the payment hash')
          return
        }
        markPaid(hash, jobID, 'paid')
        cb.ok(pre)
      },
      (err) => {
        if (job.ended) return
        const msg = err && err.message ? err.message : String(err)
        if (err instanceof WalletError || (!nwc && !/timed out|did not answer/.test(msg))) {
          markPaid(hash, jobID, 'failed')
          cb.failed(msg)
          return
        }
        fail(job, msg + ' (the payment may still be in flight; this browser will not pay it again)')
      },
    )
  }

  // ---- one job ----

  let running = null

  class Job {
    constructor() {
      this.closers = []
      this.timers = new Set()
      this.ended = false
      this.finished = null
      this.done = new Promise((r) => (this.finished = r))
    }

    track(fn) {
      if (this.ended) {
        fn()
        return
      }
      this.closers.push(fn)
    }

    after(ms, fn) {
      const t = setTimeout(() => {
        this.timers.delete(t)
        if (!this.ended) fn()
      }, ms)
      this.timers.add(t)
      return t
    }

    cancel(t) {
      clearTimeout(t)
      this.timers.delete(t)
    }

    end() {
      if (this.ended) return
      this.ended = true
      for (const t of this.timers) clearTimeout(t)
      this.timers.clear()
      const cs = this.closers.splice(0)
      for (const c of cs.reverse()) {
        try {
          c()
        } catch {
          // closing is best effort
        }
      }
      this.finished()
    }
  }

  function fail(job, message) {
    if (job.ended) return
    failStage()
    showError(message)
    status('stopped: ' + message)
    job.end()
  }

  async function postJob() {
    showError('')
    setText('post-result', '')
    const copyButton = $('post-copy')
    if (copyButton) copyButton.disabled = true
    setText('post-job', '')
    setText('post-worker', '')
    setText('post-amount', '')
    setText('post-scheme', '')
    const progress = $('post-progress')

    // what to post
    const kind = Number(($('post-kind') && $('post-kind').value) || 5000)
    if (!Number.isInteger(kind) || kind < 5000 || kind > 5999) throw new Error('the job kind is not a NIP-90 request kind (5000–5999)')
    const bidSats = Number(($('post-bid') && $('post-bid').value) || 0)
    if (!Number.isInteger(bidSats) || bidSats < 1) throw new Error('the bid must be a whole number of sats, at least 1')
    const bidMsat = bidSats * 1000
    const fileInput = $('post-file')
    const files = droppedFiles || (fileInput && fileInput.files ? Array.from(fileInput.files) : [])
    if (files.length > MAX_PARTS) throw new Error('at most ' + MAX_PARTS + ' images at once (one part each)')
    const urlText = (($('post-url') && $('post-url').value) || '').trim()
    if (files.length === 0 && !urlText) throw new Error('choose an image, or give an image URL')
    if (files.length === 0) {
      let u
      try {
        u = new URLParser(urlText)
      } catch {
        throw new Error('the image URL is not a URL')
      }
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('the image URL must be http:// or https://')
    }

    // how to pay (checked before anything is posted)
    let wallet
    try {
      wallet = walletChoice()
    } catch (e) {
      throw new Error('the wallet connection URI: ' + e.message)
    }
    if (!wallet) throw new Error('no wallet: paste a Nostr Wallet Connect URI (or use a WebLN extension) to pay the worker')
    const remember = $('nwc-remember') && $('nwc-remember').checked
    if (wallet.kind === 'nwc') store(NWC_STORE, remember ? $('nwc-uri').value.trim() : null)

    const who = await signer() // a NIP-07 extension injected late is seen here
    const relay = relayAddress()
    const info = await marketInfo()
    const budget = eventBudget(info)

    const job = new Job()
    running = job
    job.after(JOB_TIMEOUT_MS, () => fail(job, 'timed out: no result within ' + JOB_TIMEOUT_MS / 60000 + ' minutes' + (job.payState === 'paying' ? ' (the payment may still be locked: this browser will not pay it again)' : '')))
    resetStages()
    if (progress) progress.hidden = false
    status('preparing the request')

    // one "i" tag per input; two or more make a stream (nips/stream.md): one part each
    const tagsWith = (values) => values.map((v) => ['i', v, 'url']).concat([['output', 'text/plain'], ['relays', relay], ['bid', String(bidMsat)], ['payment', 'escrow', 'prepay']])
    const template = (values) => ({ kind, created_at: now(), content: '', tags: tagsWith(values) })
    let values = [urlText]
    if (files.length === 1) {
      values = [await imageInput(files[0], (d) => sizeOf(template([d]), who.pubkey) <= budget, status)]
    } else if (files.length > 1) {
      // the images share the request's room equally
      const share = Math.floor((budget - sizeOf(template(files.map(() => '')), who.pubkey)) / files.length)
      values = []
      for (let i = 0; i < files.length; i++) {
        values.push(await imageInput(files[i], (d) => d.length <= share, (t) => status('image ' + (i + 1) + ' of ' + files.length + ': ' + t)))
      }
    }
    const size = sizeOf(template(values), who.pubkey)
    if (size > budget) throw new Error('the request is ' + size + ' bytes; this relay takes ' + budget + ' (half its event limit, so the result can carry it)')

    // the relay
    const conn = new S.Relay(relay)
    job.track(() => conn.close())
    conn.onclose = () => fail(job, 'the connection to the relay closed')
    status('connecting to the relay')
    await conn.connect(CONNECT_MS)

    // the wallet, before anything is posted: a job nobody can pay is not posted
    let nwc = null
    let network = ''
    if (wallet.kind === 'nwc') {
      status('connecting to the wallet')
      nwc = new NWC(wallet.uri, (fn) => job.track(fn))
      await nwc.open()
      if (nwc.methods.includes('get_info')) {
        const gi = await nwc.call('get_info', {}, CONNECT_MS)
        network = String(gi.network || '')
      }
    } else {
      status('asking WebLN for permission')
      await window.webln.enable()
    }
    if (job.ended) return job.done

    const evt = await who.sign(template(values))
    const id = evt.id
    setText('post-job', id)
    job.id = id

    if (values.length > 1) return runStream({ job, conn, evt, kind, n: values.length, bidMsat, nwc, network, sign: who.sign })

    // watch the job's feedback and results before posting, so nothing is missed
    const resultKind = kind + 1000
    const seen = new Set()
    const quotes = [] // one per worker: its first
    const refusals = {} // worker -> its error feedback
    let chosen = null // the quote paid
    let held = null // the chosen worker's result, until it can be read
    let preimage = ''
    let paid = false
    let locked = false
    let failInfo = ''
    let payFailed = null
    let windowOver = false

    const showQuotes = () => {
      const list = quotes.map((q) => sats(q.msat) + ' from ' + shortKey(q.worker) + (q.escrow ? ' (escrow)' : '')).join('; ')
      status('waiting for quotes' + (list ? ': ' + list : ''))
    }

    const finishWith = (text) => {
      setText('post-result', text)
      const copyButton = $('post-copy')
      if (copyButton) copyButton.disabled = false
      setStage('done')
      status('done: ' + (text ? text.length + ' characters' : 'an empty result') + ' from ' + shortKey(chosen.worker))
      job.end()
    }

    // tryResult reads the held result once it may be read: from the worker paid, after its
    // payment completed (escrow: the preimage opens it).
    const tryResult = () => {
      if (!held || !paid || job.ended) return
      const sealedTag = tag(held, 'escrow')
      if (!sealedTag) {
        finishWith(String(held.content || ''))
        return
      }
      if (sealedTag[1] !== SEAL || sealedTag[2] !== chosen.invoice.paymentHash) {
        fail(job, 'paid, but the result is sealed for another payment (worker ' + chosen.worker + ', payment hash ' + chosen.invoice.paymentHash + ', preimage ' + preimage + ', result ' + held.id + ')')
        return
      }
      let text
      try {
        text = openSealed(preimage, id, held.content)
      } catch (e) {
        fail(job, 'paid for a result that cannot be opened — keep this as proof: worker ' + chosen.worker + ', payment hash ' + chosen.invoice.paymentHash + ', preimage ' + preimage + ', result ' + held.id)
        return
      }
      finishWith(text)
    }

    const refunded = () => {
      const li = stageEl('paid')
      if (li) li.textContent = 'refunded'
      fail(job, (failInfo || 'the worker cancelled the payment without saying why') + ' (the locked payment was refunded)')
    }

    const pay = (q) => {
      job.payState = 'paying'
      status('paying ' + sats(q.msat) + ' to ' + shortKey(q.worker) + (q.escrow ? ' (locked until the result is delivered)' : ''))
      payOnce(job, nwc, q, id, {
        ok: (pre) => {
          job.payState = 'paid'
          preimage = pre
          paid = true
          if (q.escrow) {
            if (!locked) setStage('paid', 'locked')
            setStage('processing')
            status('settled: the worker delivered and was paid; opening the result')
          } else {
            setStage('paid', 'paid')
            setStage('processing')
            status('paid; the worker is processing')
          }
          tryResult()
        },
        failed: (msg) => {
          job.payState = 'failed'
          payFailed = msg
          if (q.escrow) {
            if (failInfo) refunded()
            else job.after(FAILURE_GRACE_MS, () => (locked || failInfo ? refunded() : fail(job, 'payment failed: ' + payFailed)))
            return
          }
          fail(job, 'payment failed: ' + msg)
        },
      })
    }

    const choose = () => {
      if (chosen || job.ended) return
      const ok = []
      const why = []
      for (const q of quotes) {
        const problem = checkQuote(q, id, bidMsat, network)
        if (problem) why.push(shortKey(q.worker) + ': ' + problem)
        else ok.push(q)
      }
      for (const w of Object.keys(refusals)) why.push(shortKey(w) + ': ' + refusals[w])
      if (ok.length === 0) {
        if (why.length > 0) fail(job, 'no acceptable quote: ' + why.join('; '))
        return // nobody quoted yet
      }
      // escrow over a plain quote, then the cheapest (first come wins a tie)
      ok.sort((a, b) => (!!b.escrow - !!a.escrow) || a.msat - b.msat || a.at - b.at)
      chosen = ok[0]
      setText('post-worker', shortKey(chosen.worker))
      const wk = $('post-worker')
      if (wk) wk.title = chosen.worker
      setText('post-amount', sats(chosen.msat))
      setText('post-scheme', chosen.escrow ? 'escrow' : 'prepay')
      setStage('quote', 'quote: ' + sats(chosen.msat) + ' from ' + shortKey(chosen.worker))
      status('quote: ' + sats(chosen.msat) + ' from ' + shortKey(chosen.worker))
      pay(chosen)
    }

    const onEvent = (e) => {
      if (job.ended || seen.has(e.id) || !tagsNamed(e, 'e').some((t) => t[1] === id)) return
      seen.add(e.id)
      if (seen.size > 2000) return // a flood: ignore the rest
      if (e.kind === FEEDBACK_KIND) {
        const st = tag(e, 'status')
        const s = st ? String(st[1]) : ''
        const info = st && st[2] ? String(st[2]).slice(0, 500) : String(e.content || '').slice(0, 500)
        if (chosen && e.pubkey === chosen.worker) {
          if ((s === 'processing' || s === 'partial') && !locked) {
            locked = true
            if (chosen.escrow && !paid && !payFailed) {
              setStage('paid', 'locked')
              setStage('processing')
              status('locked: the payment is held while ' + shortKey(chosen.worker) + ' processes')
            } else if (!chosen.escrow) {
              setStage('processing')
              status('processing')
            }
          } else if (s === 'error') {
            failInfo = info || 'the worker reported an error'
            if (chosen.escrow) {
              if (payFailed) refunded() // else the worker cancels next: its answer says refunded
            } else fail(job, 'the worker reported an error: ' + failInfo)
          }
          return
        }
        if (chosen) return
        if (s === 'payment-required') {
          if (quotes.some((q) => q.worker === e.pubkey)) return // a worker's first offer stands
          const a = tag(e, 'amount')
          const q = { worker: e.pubkey, msat: a ? Number(a[1]) || 0 : 0, bolt11: a && a[2] ? String(a[2]) : '', at: Date.now() }
          Object.assign(q, parseEscrowQuote(e))
          quotes.push(q)
          if (!windowOver) showQuotes()
          else choose() // the window passed with nothing to choose: the first one in is taken
        } else if (s === 'error') {
          refusals[e.pubkey] = info || 'refused'
          if (windowOver && quotes.length === 0) choose()
        }
        return
      }
      if (e.kind === resultKind) {
        if (!chosen || e.pubkey !== chosen.worker) return // only the worker paid is read
        // a result sealed for the payment wins over one that is not
        const sealedFor = (r) => {
          const t = tag(r, 'escrow')
          return !!t && t[2] === (chosen.invoice && chosen.invoice.paymentHash)
        }
        if (!held || sealedFor(e) || !sealedFor(held)) held = e
        tryResult()
      }
    }

    const sub = conn.subscribe([{ kinds: [FEEDBACK_KIND, resultKind], '#e': [id], since: now() - 5 }], {
      onevent: onEvent,
      onclosed: (why) => fail(job, 'the relay ended the job’s subscription: ' + why),
    })
    job.track(() => sub.close())

    return publishJob(job, conn, evt, 'posting the job', showQuotes, () => {
      windowOver = true
      choose()
    }, () => chosen)
  }

  // publishJob posts evt and, once the relay took it, opens the quote window: onQuotes runs at
  // once, onWindow when the window closes, and the job fails if no worker was chosen (chosen()
  // is falsy) within NO_QUOTE_MS. It returns job.done.
  async function publishJob(job, conn, evt, posting, onQuotes, onWindow, chosen) {
    status(posting)
    job.started = Date.now()
    const ok = await conn.publish(evt, OK_MS)
    if (job.ended) return job.done
    if (!ok.ok) {
      fail(job, 'the relay refused the job: ' + (ok.message || 'no reason given'))
      return job.done
    }
    setStage('quotes')
    onQuotes()
    job.after(QUOTE_WINDOW_MS, onWindow)
    job.after(NO_QUOTE_MS, () => {
      if (!chosen()) fail(job, 'no worker quoted within ' + NO_QUOTE_MS / 1000 + ' s')
    })
    return job.done
  }

  // ---- a stream: two or more inputs, one part each, each part quoted and paid on its own ----

  // runStream follows a stream (nips/stream.md, client/stream.go): it chooses a worker on the
  // quotes for part 1 (escrow first, then the cheapest), then pays only that worker's part
  // quotes, in order, each once (the first quote of a part stands), the total within the bid;
  // each part is opened (escrow: with its own preimage, context "<job id>:<k>") and shown as it
  // comes. A quote refused stops the stream: the request is deleted (NIP-09) so the worker
  // stops and cancels what it holds.
  function runStream(c) {
    const { job, conn, evt, kind, n, bidMsat, nwc, network } = c
    const id = evt.id
    const resultKind = kind + 1000
    const seen = new Set()
    const first = [] // quotes for part 1, one per worker
    const refusals = {} // worker -> why
    const parts = [] // 1..n: {quote, hash, preimage, partial, paying}
    for (let k = 0; k <= n; k++) parts.push({})
    const hashes = new Set()
    let worker = '' // the chosen worker
    let escrowStream = false
    let next = 1 // the next part to pay
    let paying = 0
    let committed = 0 // msat paid or being paid
    let paidMsat = 0
    let reported = 0 // parts shown
    const texts = []
    let final = null
    let failInfo = ''
    let windowOver = false
    let graceTimer = null

    const partStage = () => {
      const li = stageEl('parts')
      if (li) li.hidden = false
    }

    let stopping = false
    const stop = (message, deleteIt) => {
      if (job.ended || stopping) return
      const end = () => {
        const got = reported > 0 ? ' (' + reported + ' of ' + n + ' parts received, ' + sats(paidMsat) + ' paid)' : ''
        fail(job, message + got)
      }
      if (!deleteIt) {
        end()
        return
      }
      // delete the request (NIP-09) so the worker stops and cancels the parts it holds
      stopping = true
      status('stopping: deleting the request so the worker stops')
      Promise.resolve()
        .then(() => c.sign({ kind: 5, created_at: now(), content: 'stopped by the customer', tags: [['e', id], ['k', String(kind)]] }))
        .then((d) => conn.publish(d, OK_MS))
        .catch(() => {})
        .then(end)
    }

    const finish = () => {
      setStage('done')
      status('done: ' + n + ' parts from ' + shortKey(worker) + ', ' + sats(paidMsat) + ' paid')
      job.end()
    }

    const partLabel = (k) => 'part ' + k + ' of ' + n

    const openReady = () => {
      for (let k = reported + 1; k <= n; k++) {
        const p = parts[k]
        if (!p.preimage || !p.partial) return
        let text = String(p.partial.content || '')
        const t = tag(p.partial, 'escrow')
        if (t) {
          if (t[1] !== SEAL || t[2] !== p.hash) {
            stop('paid for ' + partLabel(k) + ' but it is sealed for another payment (partial ' + p.partial.id + ', payment hash ' + p.hash + ', preimage ' + p.preimage + ')')
            return
          }
          try {
            text = openSealed(p.preimage, id + ':' + k, text)
          } catch {
            stop('paid for a part that cannot be opened — keep this as proof: worker ' + worker + ', ' + partLabel(k) + ', partial ' + p.partial.id + ', payment hash ' + p.hash + ', preimage ' + p.preimage)
            return
          }
        } else if (escrowStream) {
          stop(partLabel(k) + ' arrived unsealed from an escrow stream')
          return
        }
        reported = k
        texts.push(text)
        setText('post-result', texts.join('\n\n'))
        const copyButton = $('post-copy')
        if (copyButton) copyButton.disabled = false
        partStage()
        setStage('parts', partLabel(k))
        setText('post-amount', sats(paidMsat))
        status(partLabel(k) + ' received (' + sats(paidMsat) + ' paid so far)')
      }
      if (reported === n) {
        if (final) finish()
        else if (!graceTimer) graceTimer = job.after(RESULT_GRACE_MS, finish)
      }
    }

    const payReady = () => {
      while (!job.ended && next <= n && paying < Math.min(n, STREAM_MAX_PAYING)) {
        const k = next
        const p = parts[k]
        if (!p.quote) return
        const q = p.quote
        const problem = checkQuote(q, id, bidMsat - committed, network, 'sparecycles job ' + id + ' part ' + k + '/' + n)
        if (problem) {
          stop('refused the quote for ' + partLabel(k) + ': ' + problem, true)
          return
        }
        if (!!q.escrow !== escrowStream) {
          stop(partLabel(k) + ' is paid otherwise than part 1', true)
          return
        }
        if (hashes.has(q.invoice.paymentHash)) {
          stop(partLabel(k) + ' reuses the invoice of another part', true)
          return
        }
        hashes.add(q.invoice.paymentHash)
        p.hash = q.invoice.paymentHash
        paying++
        committed += q.msat
        next++
        status('paying ' + partLabel(k) + ': ' + sats(q.msat) + (q.escrow ? ' (locked until the part is delivered)' : ''))
        payOnce(job, nwc, q, id, {
          ok: (pre) => {
            paying--
            p.preimage = pre
            paidMsat += q.msat
            setText('post-amount', sats(paidMsat))
            if (k === 1) setStage('processing')
            openReady()
            payReady()
          },
          failed: (msg) => {
            paying--
            committed -= q.msat
            if (escrowStream) {
              // the worker cancelled the part: its error feedback says why
              const refund = () => {
                const li = stageEl('paid')
                if (li) li.textContent = 'refunded'
                stop((failInfo || 'the worker cancelled ' + partLabel(k) + ' without saying why') + ' (the locked payment of ' + partLabel(k) + ' was refunded)')
              }
              if (failInfo) refund()
              else job.after(FAILURE_GRACE_MS, refund)
              return
            }
            stop('payment of ' + partLabel(k) + ' failed: ' + msg, true)
          },
        })
      }
    }

    const choose = () => {
      if (worker || job.ended) return
      const ok = []
      const why = []
      for (const q of first) {
        const problem = checkQuote(q, id, bidMsat, network, 'sparecycles job ' + id + ' part 1/' + n)
        if (problem) why.push(shortKey(q.worker) + ': ' + problem)
        else ok.push(q)
      }
      for (const w of Object.keys(refusals)) why.push(shortKey(w) + ': ' + refusals[w])
      if (ok.length === 0) {
        if (why.length > 0) fail(job, 'no acceptable quote: ' + why.join('; '))
        return
      }
      ok.sort((a, b) => (!!b.escrow - !!a.escrow) || a.msat - b.msat || a.at - b.at)
      const q = ok[0]
      worker = q.worker
      escrowStream = !!q.escrow
      setText('post-worker', shortKey(worker))
      const wk = $('post-worker')
      if (wk) wk.title = worker
      setText('post-scheme', escrowStream ? 'escrow' : 'prepay')
      setStage('quote', 'quote: ' + sats(q.msat) + ' for part 1 of ' + n + ' from ' + shortKey(worker))
      setStage('paid', escrowStream ? 'locked' : 'paid')
      partStage()
      // the worker's quotes for later parts that came meanwhile were kept in parts[]
      for (let k = 1; k <= n; k++) if (parts[k].quote && parts[k].quote.worker !== worker) parts[k].quote = null
      parts[1].quote = q
      for (const pending of later) if (pending.worker === worker && !parts[pending.k].quote) parts[pending.k].quote = pending
      later.length = 0
      payReady()
    }

    const later = [] // quotes for parts after 1 that came before a worker was chosen

    const onEvent = (e) => {
      if (job.ended || seen.has(e.id) || !tagsNamed(e, 'e').some((t) => t[1] === id)) return
      seen.add(e.id)
      if (seen.size > 5000) return
      if (worker && e.pubkey !== worker) return // only the chosen worker is read
      if (e.kind === resultKind) {
        if (!worker) return
        if (!final) final = e
        if (reported === n) finish()
        return
      }
      if (e.kind !== FEEDBACK_KIND) return
      const st = tag(e, 'status')
      const s = st ? String(st[1]) : ''
      const info = st && st[2] ? String(st[2]).slice(0, 500) : String(e.content || '').slice(0, 500)
      const pt = tag(e, 'part')
      const k = pt ? Number(pt[1]) : 0
      const pn = pt ? Number(pt[2]) : 0
      const isPart = pt && Number.isInteger(k) && k >= 1 && k <= n && pn === n
      if (s === 'error') {
        if (!worker) {
          refusals[e.pubkey] = info || 'refused'
          if (windowOver && first.length === 0) choose()
          return
        }
        failInfo = info || 'the worker reported an error'
        if (paying === 0 || !escrowStream) stop('the worker stopped: ' + failInfo)
        return // a part held is cancelled next: its payment's answer says refunded
      }
      if (s === 'payment-required') {
        if (!isPart) {
          if (!worker) refusals[e.pubkey] = pt ? 'quotes a part the request does not have' : 'not a stream quote (no part tag): a stream is paid part by part'
          return
        }
        const a = tag(e, 'amount')
        const q = { worker: e.pubkey, k, msat: a ? Number(a[1]) || 0 : 0, bolt11: a && a[2] ? String(a[2]) : '', at: Date.now() }
        Object.assign(q, parseEscrowQuote(e))
        if (!worker) {
          if (k === 1) {
            if (first.some((o) => o.worker === e.pubkey)) return
            first.push(q)
            const list = first.map((o) => sats(o.msat) + ' from ' + shortKey(o.worker) + (o.escrow ? ' (escrow)' : '')).join('; ')
            status('waiting for quotes for part 1 of ' + n + ': ' + list)
            if (windowOver) choose()
          } else if (later.length < 10 * n) later.push(q)
          return
        }
        if (parts[k].quote) return // the first quote of a part stands
        parts[k].quote = q
        payReady()
        return
      }
      if (s === 'processing' && worker && reported === 0) {
        setStage('processing')
        status((escrowStream ? 'locked: ' : 'paid: ') + shortKey(worker) + ' is processing part 1 of ' + n)
        return
      }
      if (s === 'partial' && worker && isPart) {
        const p = parts[k]
        const sealedFor = (r) => {
          const t = tag(r, 'escrow')
          return !!t && !!p.hash && t[2] === p.hash
        }
        if (!p.partial || !p.hash || sealedFor(e) || !sealedFor(p.partial)) p.partial = e
        openReady()
      }
    }

    const sub = conn.subscribe([{ kinds: [FEEDBACK_KIND, resultKind], '#e': [id], since: now() - 5 }], {
      onevent: onEvent,
      onclosed: (why) => fail(job, 'the relay ended the job’s subscription: ' + why),
    })
    job.track(() => sub.close())

    return publishJob(job, conn, evt, 'posting the job (' + n + ' images, one part each)',
      () => status('waiting for quotes for part 1 of ' + n), () => {
        windowOver = true
        choose()
      }, () => worker)
  }

  // ---- wiring ----

  function setBusy(busy) {
    const b = $('post-submit')
    if (b) b.disabled = busy
    form.setAttribute('aria-busy', busy ? 'true' : 'false')
  }

  function disableForm(message) {
    for (const el of form.querySelectorAll('input, button, select, textarea')) el.disabled = true
    const note = $('post-unavailable')
    if (note) note.hidden = false
    else showError(message)
  }

  if (!S) {
    disableForm('Posting from this page needs its script bundle (nostr.js), which this relay was built without: run scripts/web-bundle, rebuild the relay, then reload.')
    return
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault()
    if (running && !running.ended) return
    setBusy(true)
    let job = null
    postJob()
      .then(() => {}, (e) => {
        job = running
        const msg = e && e.message ? e.message : String(e)
        if (job && !job.ended) fail(job, msg)
        else if (!job) {
          showError(msg)
          status('')
        }
      })
      .finally(() => {
        if (running && !running.ended) running.end()
        running = null
        droppedFiles = null
        setBusy(false)
      })
  })

  const drop = $('post-drop')
  if (drop) {
    drop.addEventListener('dragover', (ev) => {
      ev.preventDefault()
      if (ev.dataTransfer) ev.dataTransfer.dropEffect = 'copy'
      drop.classList.add('dragover')
    })
    drop.addEventListener('dragleave', () => drop.classList.remove('dragover'))
    drop.addEventListener('drop', (ev) => {
      ev.preventDefault()
      drop.classList.remove('dragover')
      const fs = ev.dataTransfer && ev.dataTransfer.files ? Array.from(ev.dataTransfer.files) : []
      if (fs.length === 0) return
      if (!fs.every((f) => /^image\//.test(f.type || ''))) {
        showError('only images can be posted')
        return
      }
      droppedFiles = fs
      const input = $('post-file')
      if (input) {
        try {
          input.files = ev.dataTransfer.files // shows the files where supported
          droppedFiles = null
        } catch {
          // kept in droppedFiles
        }
      }
      showError('')
      showFileName(fs)
    })
  }

  function showFileName(fs) {
    fs = Array.from(fs || [])
    setText('post-file-name', fs.length === 0 ? '' : fs.length === 1 ? fs[0].name : fs.length + ' images, one part each: ' + fs.map((f) => f.name).join(', '))
  }

  const fileInput = $('post-file')
  if (fileInput) {
    fileInput.multiple = true // two or more images are a stream (nips/stream.md)
    fileInput.addEventListener('change', () => {
      droppedFiles = null
      showFileName(fileInput.files)
    })
  }

  const reset = $('key-reset')
  if (reset) {
    reset.addEventListener('click', () => {
      if (!window.confirm("Make a new local key? The old one is forgotten: jobs and reviews signed with it can no longer be tied to you from this browser.")) return
      store(KEY_STORE, null)
      memoryKey = null
      showSigner()
    })
  }

  const nwcInput = $('nwc-uri')
  const remember = $('nwc-remember')
  const saved = load(NWC_STORE)
  if (nwcInput && saved) {
    nwcInput.value = saved
    if (remember) remember.checked = true
  }
  if (nwcInput) {
    nwcInput.addEventListener('input', () => {
      showWallet()
      // a remembered URI follows the edits, while it is a valid one
      if (remember && remember.checked && nwcURI) store(NWC_STORE, nwcInput.value.trim())
    })
  }
  if (remember) {
    remember.addEventListener('change', () => {
      if (!remember.checked) store(NWC_STORE, null)
      else if (nwcInput && nwcInput.value.trim()) {
        try {
          parseNWC(nwcInput.value)
          store(NWC_STORE, nwcInput.value.trim())
        } catch {
          // an invalid URI is not kept
        }
      }
      showWallet()
    })
  }

  const copy = $('post-copy')
  if (copy) {
    let restore = null
    copy.addEventListener('click', () => {
      const text = ($('post-result') && $('post-result').textContent) || ''
      const said = (word) => {
        const label = copy.dataset.label || copy.textContent
        copy.dataset.label = label
        copy.textContent = word
        clearTimeout(restore)
        restore = setTimeout(() => (copy.textContent = label), 2000)
      }
      const fallback = () => {
        const ta = document.createElement('textarea')
        ta.value = text
        ta.setAttribute('readonly', '')
        ta.setAttribute('aria-hidden', 'true')
        ta.style.position = 'fixed'
        ta.style.left = '-9999px'
        document.body.appendChild(ta)
        ta.select()
        let ok = false
        try {
          ok = document.execCommand('copy')
        } catch {
          ok = false
        }
        ta.remove()
        said(ok ? 'copied' : 'copy failed: select the text')
      }
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(() => said('copied'), fallback)
      else fallback()
    })
  }

  showSigner()
  showWallet()
  // NIP-07 and WebLN extensions inject their globals late: look again shortly (and at submit)
  for (const ms of [500, 2000]) setTimeout(() => {
    showSigner()
    if (!running) showWallet()
  }, ms)
})()
