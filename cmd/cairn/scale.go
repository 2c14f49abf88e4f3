package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/experiment"
)

// runScaleExperiment is 'cairn experiment scale'.
func runScaleExperiment(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("experiment scale", stderr)
	nodes := fs.String("nodes", "100,300,1000", "comma-separated node counts, one simulated round each")
	params := fs.Int("params", 10_000_000, "model parameters")
	codec := fs.String("codec", "topk:82/4096:2", "the contributions' codec (default: 2% density at 2 bits)")
	mbps := fs.Float64("link-mbps", 50, "every node's link, each way, in Mbit/s")
	rtt := fs.Duration("link-rtt", 50*time.Millisecond, "round trip between any two nodes")
	loss := fs.Float64("link-loss", 0, "packet loss (a piece that loses one stalls one retransmission timeout)")
	nat := fs.Float64("nat", 0.3, "share of nodes behind NAT (they peer only with public nodes)")
	churn := fs.Float64("churn", 0.02, "share of nodes that leave during the round")
	degree := fs.Int("degree", 16, "peers per node")
	blockTime := fs.Duration("block-time", time.Second, "the chain's block interval")
	aggregate := fs.Duration("aggregate", 2*time.Second, "a node's aggregation and outer step once it holds the contributions (modelled, not run)")
	fetchTimeout := fs.Duration("fetch-timeout", time.Minute, "how long a node waits for contributions it lacks before voting without them")
	seed := fs.Uint64("seed", 1, "seed of the graph, churn and losses")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	c, err := compress.ParseCodec(*codec)
	if err != nil {
		return badInput("--codec: %v", err)
	}
	var counts []int
	for _, f := range strings.Split(*nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return badInput("--nodes: %q is not a count of at least 2", f)
		}
		counts = append(counts, n)
	}
	if *params < 1 || *mbps <= 0 || *rtt < 0 || *degree < 1 || *nat < 0 || *nat >= 1 || *churn < 0 || *churn >= 1 || *loss < 0 || *loss >= 1 {
		return badInput("--params, --link-mbps and --degree positive; --nat, --churn and --link-loss in [0, 1)")
	}
	if *blockTime <= 0 || *aggregate < 0 || *fetchTimeout <= 0 {
		return badInput("--block-time and --fetch-timeout positive, --aggregate not negative")
	}
	fmt.Fprintf(stdout, "one round without an aggregator, simulated: every node publishes its contribution (%s of %d parameters) and fetches every other through the swarm state machine; links %.0f Mbit/s each way, RTT %s, loss %g; %.0f%% behind NAT, %.0f%% churn, %d peers per node\n",
		c, *params, *mbps, *rtt, *loss, 100**nat, 100**churn, *degree)
	fmt.Fprintf(stdout, "chain: a block every %s; a node aggregates for %s once it holds the contributions, waits at most %s for those it lacks, then votes\n", *blockTime, *aggregate, *fetchTimeout)
	fmt.Fprintf(stdout, "%-7s %-12s %-10s %-10s %-11s %-11s %-9s %-14s %-16s %-10s %-10s %-10s %-10s %-11s %s\n", "nodes", "contribution", "fetch", "complete", "up mean", "up max", "up/own",
		"aggregator in", "aggregator needs", "window", "closed", "all voted", "agreeing", "chain", "sim")
	for _, n := range counts {
		rep, err := experiment.Scale(experiment.ScaleOptions{Nodes: n, Params: *params, Codec: c, Mbps: *mbps, RTT: *rtt, Loss: *loss,
			NAT: *nat, Churn: *churn, Degree: *degree, BlockTime: *blockTime, Aggregate: *aggregate, FetchTimeout: *fetchTimeout, Seed: *seed})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-7d %-12s %-10s %-10s %-11s %-11s %-9s %-14s %-16s %-10s %-10s %-10s %-10s %-11s %s\n", n, human(uint64(rep.Contribution)),
			rep.RoundTime.Round(time.Millisecond), fmt.Sprintf("%d/%d", rep.Complete, rep.Stayed), human(uint64(rep.UpMean)), human(uint64(rep.UpMax)),
			fmt.Sprintf("%.1fx", rep.UpRatio()), human(uint64(rep.AggregatorIn)), fmt.Sprintf("%.0f Mbit/s", rep.AggregatorMbps),
			rep.WindowClosed.Round(time.Millisecond), rep.Closed.Round(time.Millisecond), rep.AllVoted.Round(time.Millisecond),
			fmt.Sprintf("%d/%d", rep.Agreeing, rep.Agreeing+rep.Disagreeing), human(uint64(rep.ChainBytes)),
			fmt.Sprintf("%d events, %s", rep.Events, rep.Wall.Round(time.Millisecond)))
	}
	fmt.Fprintln(stdout, "up/own: the largest upload of a node over its own contribution; every node fetches every other contribution, so the nodes upload on average what they download, (N-1) contributions and the control messages")
	fmt.Fprintln(stdout, "aggregator needs: the link an aggregator needs to take in every contribution (and send the update, 4x as dense, to every node) within the same round time")
	fmt.Fprintln(stdout, "window, closed, all voted: from the start of the round (every node commits), on the ledger state machine: the commit window closed; the round closed with the result a majority voted for; every node that stayed had voted. agreeing: of the nodes that stayed, those whose vote was that result; chain: the round's transactions (commits, votes by hash, results sent in full)")
	fmt.Fprintln(stdout, "fetch: from the window's close to every node that stayed holding every contribution it could get")
	return nil
}
