// The entry of the market page's bundle (relay/web/static/nostr.js, built by scripts/web-bundle
// from the versions pinned in web/package-lock.json). It defines one global, window.SCNostr:
// what relay/web/static/post.js needs to sign, encrypt, talk to relays, check invoices and open
// escrow results. No network request is made here except the websockets post.js asks for.
import { generateSecretKey, getPublicKey, finalizeEvent, verifyEvent } from 'nostr-tools/pure'
import * as nip19 from 'nostr-tools/nip19'
import * as nip04 from 'nostr-tools/nip04'
import * as nip44 from 'nostr-tools/nip44'
import { sha256 } from '@noble/hashes/sha2.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { bytesToHex, hexToBytes, utf8ToBytes, randomBytes } from '@noble/hashes/utils.js'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { decode as decodeBolt11 } from 'light-bolt11-decoder'

// Relay is a minimal NIP-01 client over one WebSocket: connect, publish (resolves with the
// relay's OK), subscribe (REQ/EVENT/EOSE/CLOSED, events checked with verifyEvent), close.
// Every wait is bounded by a timeout; close() ends every subscription and pending publish.
class Relay {
  constructor(url) {
    this.url = url
    this.ws = null
    this.subs = new Map() // id -> handlers
    this.pending = new Map() // event id -> {resolve, timer}
    this.nextSub = 0
    this.closed = false
    this.onclose = null // called once when the socket ends after it was open
  }

  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let ws
      try {
        ws = new WebSocket(this.url)
      } catch (e) {
        reject(new Error('cannot open ' + this.url + ': ' + e.message))
        return
      }
      this.ws = ws
      let opened = false
      const timer = setTimeout(() => {
        if (!opened) {
          reject(new Error('no answer from ' + this.url + ' within ' + Math.round(timeoutMs / 1000) + ' s'))
          this.close()
        }
      }, timeoutMs)
      ws.onopen = () => {
        opened = true
        clearTimeout(timer)
        resolve(this)
      }
      ws.onerror = () => {} // onclose follows and says it
      ws.onclose = () => {
        clearTimeout(timer)
        if (!opened) reject(new Error('cannot connect to ' + this.url))
        this._ended('connection closed')
      }
      ws.onmessage = (m) => this._message(m.data)
    })
  }

  _ended(why) {
    const wasOpen = !this.closed
    this.closed = true
    for (const [, p] of this.pending) {
      clearTimeout(p.timer)
      p.resolve({ ok: false, message: why })
    }
    this.pending.clear()
    const subs = [...this.subs.values()]
    this.subs.clear()
    for (const s of subs) if (s.onclosed) s.onclosed(why)
    if (wasOpen && this.onclose) this.onclose(why)
  }

  _message(data) {
    let msg
    try {
      msg = JSON.parse(data)
    } catch {
      return
    }
    if (!Array.isArray(msg)) return
    switch (msg[0]) {
      case 'EVENT': {
        const s = this.subs.get(msg[1])
        const evt = msg[2]
        if (!s || !evt || typeof evt !== 'object') return
        if (!verifyEvent(evt)) return
        s.onevent(evt)
        return
      }
      case 'EOSE': {
        const s = this.subs.get(msg[1])
        if (s && s.oneose) s.oneose()
        return
      }
      case 'CLOSED': {
        const s = this.subs.get(msg[1])
        if (!s) return
        this.subs.delete(msg[1])
        if (s.onclosed) s.onclosed(String(msg[2] || 'closed by the relay'))
        return
      }
      case 'OK': {
        const p = this.pending.get(msg[1])
        if (!p) return
        this.pending.delete(msg[1])
        clearTimeout(p.timer)
        p.resolve({ ok: msg[2] === true, message: String(msg[3] || '') })
        return
      }
    }
  }

  _send(arr) {
    if (!this.ws || this.ws.readyState !== 1) throw new Error('not connected to ' + this.url)
    this.ws.send(JSON.stringify(arr))
  }

  // publish sends evt and resolves with {ok, message} from the relay's OK (ok false with a
  // message when none came within timeoutMs or the connection ended).
  publish(evt, timeoutMs = 10000) {
    return new Promise((resolve) => {
      try {
        this._send(['EVENT', evt])
      } catch (e) {
        resolve({ ok: false, message: e.message })
        return
      }
      const timer = setTimeout(() => {
        this.pending.delete(evt.id)
        resolve({ ok: false, message: 'no OK from ' + this.url + ' within ' + Math.round(timeoutMs / 1000) + ' s' })
      }, timeoutMs)
      this.pending.set(evt.id, { resolve, timer })
    })
  }

  // subscribe sends REQ; handlers {onevent, oneose, onclosed}. Returns {close()}.
  subscribe(filters, handlers) {
    const id = 'sc' + this.nextSub++
    this.subs.set(id, handlers)
    this._send(['REQ', id, ...filters])
    return {
      close: () => {
        if (!this.subs.delete(id)) return
        try {
          this._send(['CLOSE', id])
        } catch {
          // the socket is gone: nothing to close
        }
      },
    }
  }

  close() {
    if (this.ws) {
      const ws = this.ws
      ws.onmessage = null
      try {
        ws.close()
      } catch {
        // already closing
      }
    }
    this._ended('closed')
  }
}

// bolt11 decodes an invoice (no signature check: the paying wallet checks it) into the fields
// the customer checks before paying.
function bolt11(invoice) {
  const d = decodeBolt11(invoice.trim())
  const out = { paymentRequest: d.paymentRequest, msat: 0, paymentHash: '', description: '', descriptionHash: '', timestamp: 0, expiry: 3600, network: '' }
  for (const s of d.sections) {
    switch (s.name) {
      case 'coin_network':
        out.network = s.value && s.value.bech32 ? s.value.bech32 : ''
        break
      case 'amount':
        out.msat = Number(s.value)
        break
      case 'payment_hash':
        out.paymentHash = s.value
        break
      case 'description':
        out.description = s.value
        break
      case 'description_hash':
        out.descriptionHash = s.value
        break
      case 'timestamp':
        out.timestamp = Number(s.value)
        break
      case 'expiry':
        out.expiry = Number(s.value)
        break
    }
  }
  return out
}

// hkdfSha256 is HKDF-SHA256 (RFC 5869) giving length bytes.
function hkdfSha256(ikm, salt, info, length) {
  return hkdf(sha256, ikm, salt, info, length)
}

window.SCNostr = Object.freeze({
  generateSecretKey,
  getPublicKey,
  finalizeEvent,
  verifyEvent,
  nip19,
  nip04,
  nip44: { encrypt: nip44.v2.encrypt, decrypt: nip44.v2.decrypt, getConversationKey: nip44.v2.utils.getConversationKey },
  Relay,
  sha256,
  hkdf: hkdfSha256,
  xchacha20poly1305,
  bytesToHex,
  hexToBytes,
  utf8ToBytes,
  randomBytes,
  bolt11,
})
