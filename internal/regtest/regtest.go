package regtest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The versions scripts/regtest-build builds; its cache directory is named after them.
const (
	btcdVersion = "v0.24.2"
	lndVersion  = "v0.19.3-beta"
)

// Channel sizes, in satoshis.
const (
	ChannelCapacity = 1_000_000
	ChannelPush     = 300_000 // bob's side, so he can pay alice back
)

const (
	startTimeout = 3 * time.Minute // the whole of Start, which takes about 4s
	waitTimeout  = time.Minute     // Mine's wait for the nodes to catch up
	pollInterval = 50 * time.Millisecond
	segwitBlocks = 450 // past segwit activation (432) and coinbase maturity (100)
	rpcUser      = "regtest"
	rpcPass      = "regtest"
)

// Enabled reports whether SPARECYCLES_REGTEST=1.
func Enabled() bool { return os.Getenv("SPARECYCLES_REGTEST") == "1" }

// Network is a running regtest network: btcd and two lnd nodes with an active alice→bob channel.
type Network struct {
	Alice, Bob *Node

	btcd     *btcdRPC
	btcdProc *proc
}

// Start brings up btcd and the lnd nodes alice and bob, funds alice, opens a channel of
// ChannelCapacity from alice to bob with ChannelPush on bob's side, and returns once both
// nodes see it active and can route over it in both directions. t.Cleanup stops everything.
//
// Without SPARECYCLES_REGTEST=1, Start skips the test. With it, any failure is fatal.
func Start(t testing.TB) *Network {
	t.Helper()
	if !Enabled() {
		t.Skip("regtest: set SPARECYCLES_REGTEST=1 to run this test against btcd and lnd (built by scripts/regtest-build)")
	}
	bin, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	n, err := start(ctx, t, bin)
	if err != nil {
		t.Fatalf("regtest: start: %v", err)
	}
	return n
}

// Mine mines blocks and returns once alice and bob have both seen them.
func (n *Network) Mine(t testing.TB, blocks int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := n.mine(ctx, blocks); err != nil {
		t.Fatalf("regtest: mine %d: %v", blocks, err)
	}
}

func (n *Network) mine(ctx context.Context, blocks int) error {
	height, err := n.btcd.generate(ctx, blocks)
	if err != nil {
		return err
	}
	return n.waitSynced(ctx, height)
}

// waitSynced waits until both nodes are synced to the chain at height or above.
func (n *Network) waitSynced(ctx context.Context, height int64) error {
	for _, node := range []*Node{n.Alice, n.Bob} {
		err := n.poll(ctx, node.Name+" sync to height "+strconv.FormatInt(height, 10), func(ctx context.Context) (bool, error) {
			i, err := node.getInfo(ctx)
			return i.Synced && i.Height >= height, err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// poll calls check every pollInterval until it reports true, ctx ends, or a process exits.
// Polling is how to wait on another process that offers no event to wait for.
func (n *Network) poll(ctx context.Context, what string, check func(context.Context) (bool, error)) error {
	var last error
	for {
		for _, p := range n.procs() {
			if err := p.exited(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		ok, err := check(ctx)
		if ok && err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

func (n *Network) procs() []*proc {
	var ps []*proc
	if n.btcdProc != nil {
		ps = append(ps, n.btcdProc)
	}
	for _, node := range []*Node{n.Alice, n.Bob} {
		if node != nil && node.proc != nil {
			ps = append(ps, node.proc)
		}
	}
	return ps
}

// binDir finds the directory holding btcd and lnd.
func binDir() (string, error) {
	dir := os.Getenv("SPARECYCLES_REGTEST_BIN")
	from := "SPARECYCLES_REGTEST_BIN"
	if dir == "" {
		cache := os.Getenv("SPARECYCLES_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("regtest: find the binaries: %w; set SPARECYCLES_REGTEST_BIN or SPARECYCLES_CACHE", err)
			}
			cache = filepath.Join(home, ".cache", "sparecycles")
		}
		dir = filepath.Join(cache, "regtest", "btcd-"+btcdVersion+"-lnd-"+lndVersion, "bin")
		from = "the scripts/regtest-build cache"
	}
	for _, name := range []string{"btcd", "lnd"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return "", fmt.Errorf("regtest: no %s in %s (%s): run scripts/regtest-build first", name, dir, from)
		}
	}
	return dir, nil
}

// freePorts reserves n distinct ports on 127.0.0.1 by listening on :0, and releases them for
// the daemons to take.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func start(ctx context.Context, t testing.TB, bin string) (*Network, error) {
	began := time.Now()
	step := func(what string) { t.Logf("regtest: %s (%v)", what, time.Since(began).Round(time.Millisecond)) }
	dir := t.TempDir()
	ports, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	n := &Network{}
	if err := n.startBTCD(ctx, t, bin, dir, ports[0]); err != nil {
		return nil, err
	}
	if _, err := n.btcd.generate(ctx, segwitBlocks); err != nil {
		return nil, err
	}
	step(fmt.Sprintf("btcd up, %d blocks mined", segwitBlocks))

	// Both nodes boot at once; each takes a few seconds to create its wallet.
	if n.Alice, err = n.startLND(t, bin, dir, "alice", ports[1:4]); err != nil {
		return nil, err
	}
	if n.Bob, err = n.startLND(t, bin, dir, "bob", ports[4:7]); err != nil {
		return nil, err
	}
	for _, node := range []*Node{n.Alice, n.Bob} {
		if err := n.waitReady(ctx, node); err != nil {
			return nil, err
		}
	}
	step("alice and bob synced")
	if err := n.fundAlice(ctx); err != nil {
		return nil, err
	}
	step("alice funded")
	if err := n.openChannel(ctx); err != nil {
		return nil, err
	}
	step("channel active both ways")
	return n, nil
}

func (n *Network) startBTCD(ctx context.Context, t testing.TB, bin, dir string, rpcPort int) error {
	home := filepath.Join(dir, "btcd")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	// An empty config file of our own keeps btcd from writing one to ~/.btcd, and every path
	// is given so that nothing else lands there (btcd still creates the empty directory).
	conf := filepath.Join(home, "btcd.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		return err
	}
	mining, err := miningAddr()
	if err != nil {
		return err
	}
	p, err := startProc(t, "btcd", filepath.Join(dir, "btcd.log"), filepath.Join(bin, "btcd"),
		"--regtest",
		"--configfile="+conf,
		"--datadir="+filepath.Join(home, "data"),
		"--logdir="+filepath.Join(home, "logs"),
		"--rpcuser="+rpcUser,
		"--rpcpass="+rpcPass,
		"--rpclisten="+addr(rpcPort),
		"--rpccert="+filepath.Join(home, "rpc.cert"),
		"--rpckey="+filepath.Join(home, "rpc.key"),
		"--rpcmaxclients=100",
		"--rpcmaxwebsockets=100",
		"--miningaddr="+mining,
		"--txindex",
		"--nolisten", // no peers: lnd talks to btcd over RPC only
		"--debuglevel=info",
	)
	if err != nil {
		return err
	}
	n.btcdProc = p
	cert := filepath.Join(home, "rpc.cert")
	return n.poll(ctx, "btcd rpc", func(ctx context.Context) (bool, error) {
		if n.btcd == nil {
			c, err := pinnedClient(cert)
			if errors.Is(err, os.ErrNotExist) {
				return false, nil
			} else if err != nil {
				return false, err
			}
			t.Cleanup(c.CloseIdleConnections)
			n.btcd = &btcdRPC{host: addr(rpcPort), user: rpcUser, pass: rpcPass, http: c}
		}
		var height int64
		err := n.btcd.call(ctx, "getblockcount", &height)
		return err == nil, err
	})
}

// startLND starts one lnd node; ports are its REST, gRPC and p2p ports.
func (n *Network) startLND(t testing.TB, bin, dir, name string, ports []int) (*Node, error) {
	lnddir := filepath.Join(dir, name)
	rest := addr(ports[0])
	node := &Node{
		Name:     name,
		RESTURL:  "https://" + rest,
		Macaroon: filepath.Join(lnddir, "data", "chain", "bitcoin", "regtest", "admin.macaroon"),
		TLSCert:  filepath.Join(lnddir, "tls.cert"),
		p2p:      addr(ports[2]),
	}
	p, err := startProc(t, name, filepath.Join(dir, name+".log"), filepath.Join(bin, "lnd"),
		"--lnddir="+lnddir,
		"--alias="+name,
		"--bitcoin.regtest",
		"--bitcoin.node=btcd",
		"--btcd.rpchost="+n.btcd.host,
		"--btcd.rpcuser="+rpcUser,
		"--btcd.rpcpass="+rpcPass,
		"--btcd.rpccert="+filepath.Join(dir, "btcd", "rpc.cert"),
		"--noseedbackup", // creates and unlocks a wallet without a password
		"--restlisten="+rest,
		"--rpclisten="+addr(ports[1]),
		"--listen="+node.p2p,
		"--nobootstrap",
		"--debuglevel=info",
		"--trickledelay=50",
		"--gossip.sub-batch-delay=5ms",
		"--db.batch-commit-interval=10ms",
		"--bitcoin.defaultchanconfs=1",
	)
	if err != nil {
		return nil, err
	}
	node.proc = p
	t.Cleanup(func() {
		if node.http != nil {
			node.http.CloseIdleConnections()
		}
	})
	return node, nil
}

// waitReady waits until lnd has created its wallet, started its server and synced to btcd.
func (n *Network) waitReady(ctx context.Context, node *Node) error {
	var height int64
	if err := n.btcd.call(ctx, "getblockcount", &height); err != nil {
		return err
	}
	return n.poll(ctx, node.Name+" ready", func(ctx context.Context) (bool, error) {
		if ok, err := node.connect(); !ok {
			return false, err
		}
		// getinfo answers before lnd's server is up; peers and channels need SERVER_ACTIVE.
		var state struct {
			State string `json:"state"`
		}
		if err := node.call(ctx, http.MethodGet, "/v1/state", nil, &state); err != nil || state.State != "SERVER_ACTIVE" {
			return false, err
		}
		i, err := node.getInfo(ctx)
		node.PubKey = i.PubKey
		return i.Synced && i.Height >= height, err
	})
}

// fundAlice sends alice the coinbase of block 1 (50 BTC) and waits for it to confirm.
func (n *Network) fundAlice(ctx context.Context) error {
	var a struct {
		Address string `json:"address"`
	}
	if err := n.Alice.call(ctx, http.MethodGet, "/v1/newaddress", nil, &a); err != nil {
		return err
	}
	script, err := payToAddrScript(a.Address)
	if err != nil {
		return err
	}
	if _, err := n.btcd.payFromCoinbase(ctx, 1, script); err != nil {
		return fmt.Errorf("fund alice: %w", err)
	}
	if err := n.mine(ctx, 1); err != nil {
		return err
	}
	return n.poll(ctx, "alice's confirmed balance", func(ctx context.Context) (bool, error) {
		sat, err := n.Alice.confirmedBalance(ctx)
		return sat > 0, err
	})
}

// openChannel connects alice to bob, opens the channel, confirms it and waits until both can
// route a payment to the other over it.
func (n *Network) openChannel(ctx context.Context) error {
	connect := map[string]any{
		"addr":    map[string]string{"pubkey": n.Bob.PubKey, "host": n.Bob.p2p},
		"timeout": 30,
	}
	if err := n.Alice.call(ctx, http.MethodPost, "/v1/peers", connect, nil); err != nil {
		return err
	}
	bobKey, err := hex.DecodeString(n.Bob.PubKey)
	if err != nil {
		return fmt.Errorf("bob's pubkey %q: %w", n.Bob.PubKey, err)
	}
	open := map[string]any{
		"node_pubkey":          base64.StdEncoding.EncodeToString(bobKey),
		"local_funding_amount": ChannelCapacity,
		"push_sat":             ChannelPush,
		"sat_per_vbyte":        10, // btcd has no fee estimates on a fresh regtest chain
	}
	// OpenChannelSync returns once the funding transaction is in btcd's mempool.
	if err := n.Alice.call(ctx, http.MethodPost, "/v1/channels", open, nil); err != nil {
		return err
	}
	// Six confirmations: one opens the channel, six announce it to the graph.
	if err := n.mine(ctx, 6); err != nil {
		return err
	}
	for _, hop := range [][2]*Node{{n.Alice, n.Bob}, {n.Bob, n.Alice}} {
		from, to := hop[0], hop[1]
		err := n.poll(ctx, from.Name+" active channel and route to "+to.Name, func(ctx context.Context) (bool, error) {
			if active, err := from.activeChannels(ctx); active == 0 || err != nil {
				return false, err
			}
			return from.hasRoute(ctx, to.PubKey, 1000)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
