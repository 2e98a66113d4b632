package regtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// anyoneCanSpend is the redeem script the miner pays to: OP_TRUE, wrapped in P2SH. Spending it
// takes only the script itself, so coinbases can go to alice without a wallet or a signature.
var anyoneCanSpend = []byte{txscript.OP_TRUE}

// miningAddr is the regtest P2SH address of anyoneCanSpend, for btcd's --miningaddr.
func miningAddr() (string, error) {
	addr, err := btcutil.NewAddressScriptHash(anyoneCanSpend, &chaincfg.RegressionNetParams)
	if err != nil {
		return "", err
	}
	return addr.EncodeAddress(), nil
}

// btcdRPC is a JSON-RPC client for btcd, over TLS pinned to btcd's rpc.cert.
type btcdRPC struct {
	host, user, pass string // host is 127.0.0.1:port
	http             *http.Client
}

func (c *btcdRPC) call(ctx context.Context, method string, result any, params ...any) error {
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "1.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.host, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("btcd %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("btcd %s: %w", method, err)
	}
	var reply struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return fmt.Errorf("btcd %s: HTTP %d: %.200s", method, resp.StatusCode, raw)
	}
	if reply.Error != nil {
		return fmt.Errorf("btcd %s: %s (code %d)", method, reply.Error.Message, reply.Error.Code)
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(reply.Result, result); err != nil {
		return fmt.Errorf("btcd %s: decode result: %w", method, err)
	}
	return nil
}

// generate mines blocks to miningAddr and returns the new height.
func (c *btcdRPC) generate(ctx context.Context, blocks int) (int64, error) {
	if err := c.call(ctx, "generate", nil, blocks); err != nil {
		return 0, err
	}
	var height int64
	err := c.call(ctx, "getblockcount", &height)
	return height, err
}

// payFromCoinbase spends the coinbase of block `height` (mined to anyoneCanSpend, and mature)
// to pkScript, all of it but a small fee, and returns the amount sent in satoshis.
func (c *btcdRPC) payFromCoinbase(ctx context.Context, height int64, pkScript []byte) (int64, error) {
	var hash string
	if err := c.call(ctx, "getblockhash", &hash, height); err != nil {
		return 0, err
	}
	var block struct {
		Tx []string `json:"tx"`
	}
	if err := c.call(ctx, "getblock", &block, hash, 1); err != nil {
		return 0, err
	}
	if len(block.Tx) == 0 {
		return 0, fmt.Errorf("btcd getblock %s: no transactions", hash)
	}
	var out *struct {
		Value float64 `json:"value"`
	}
	if err := c.call(ctx, "gettxout", &out, block.Tx[0], 0); err != nil {
		return 0, err
	}
	if out == nil {
		return 0, fmt.Errorf("coinbase %s:0 is already spent", block.Tx[0])
	}
	prev, err := chainhash.NewHashFromStr(block.Tx[0])
	if err != nil {
		return 0, err
	}
	const fee = 10_000 // sat; far above btcd's minimum relay fee for this ~100-byte tx
	amount := int64(math.Round(out.Value*1e8)) - fee

	tx := wire.NewMsgTx(wire.TxVersion)
	// The unlocking script pushes the redeem script; OP_TRUE then leaves true on the stack.
	sigScript, err := txscript.NewScriptBuilder().AddData(anyoneCanSpend).Script()
	if err != nil {
		return 0, err
	}
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(prev, 0), sigScript, nil))
	tx.AddTxOut(wire.NewTxOut(amount, pkScript))
	var raw bytes.Buffer
	if err := tx.Serialize(&raw); err != nil {
		return 0, err
	}
	if err := c.call(ctx, "sendrawtransaction", nil, hex.EncodeToString(raw.Bytes())); err != nil {
		return 0, err
	}
	return amount, nil
}

// payToAddrScript is the output script for a regtest address.
func payToAddrScript(address string) ([]byte, error) {
	addr, err := btcutil.DecodeAddress(address, &chaincfg.RegressionNetParams)
	if err != nil {
		return nil, fmt.Errorf("decode address %q: %w", address, err)
	}
	return txscript.PayToAddrScript(addr)
}

// rpcTimeout bounds each btcd or lnd call; generate of a few hundred blocks is the slowest.
const rpcTimeout = 2 * time.Minute
