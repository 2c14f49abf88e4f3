package experiment

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cairnlabs/cairn/compress"
	"github.com/cairnlabs/cairn/corpus"
	"github.com/cairnlabs/cairn/diloco"
	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/node"
	"github.com/cairnlabs/cairn/wire"
)

// BandwidthArm is one setting of the bandwidth comparison: the codec of
// the contributions and of the published updates, the workers'
// error-feedback decay and the outer step.
type BandwidthArm struct {
	Name          string
	Codec         compress.Codec
	DownCodec     compress.Codec // "" for Codec
	FeedbackDecay float64        // 0 for 1
	OuterLR       float64
	Momentum      float64
}

// BandwidthOptions configure Bandwidth.
type BandwidthOptions struct {
	// Config is the run (model, H, rounds, batch, inner optimizer); each
	// arm sets its codecs and outer step on a copy.
	Config  diloco.RunConfig
	Arms    []BandwidthArm
	Workers int
	Text    []byte
	// LinkBytesPerSec and LinkRTT emulate every worker's link (0: none).
	LinkBytesPerSec float64
	LinkRTT         time.Duration
	// LinkLoss is every worker link's packet loss (see wire.Link).
	LinkLoss float64
	// DDP adds per-step data parallelism at equal tokens.
	DDP     bool
	Threads int
	Log     *slog.Logger
	// Progress, when set, is told what runs and how far it got.
	Progress func(arm string, done, total int)
}

// BandwidthRow is one arm's outcome.
type BandwidthRow struct {
	Name    string
	ValLoss float64
	// Up and Down are the bytes the workers sent and received, summed
	// over workers (DDP: what k workers would exchange).
	Up, Down uint64
	Wall     time.Duration
	// Compute is the share of the workers' wall time spent training.
	Compute float64
	Note    string
}

// Bandwidth trains the same model on equal tokens with each arm over a
// loopback libp2p network whose worker links are throttled as the options
// say, and reports validation loss, bytes each way, wall time and the
// workers' compute share. With DDP it adds synchronous data parallelism:
// trained in one process, its bytes are k workers' fp32 gradients up and
// averages down every step, and its wall time at the link is the measured
// compute plus, every step, both transfers at the link rate and one round
// trip (no overlap). It fails on a bad arm or a failed run.
func Bandwidth(ctx context.Context, o BandwidthOptions) ([]BandwidthRow, error) {
	cfg := o.Config
	cfg.DataHash = node.DataHash(o.Text)
	_, val := corpus.Split(o.Text, 0.9)
	pool := kernels.NewPool(o.Threads)
	defer pool.Close()
	var rows []BandwidthRow
	for _, arm := range o.Arms {
		c := cfg
		c.Codec, c.DownCodec, c.FeedbackDecay, c.OuterLR, c.Momentum = arm.Codec, arm.DownCodec, arm.FeedbackDecay, arm.OuterLR, arm.Momentum
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %v", arm.Name, err)
		}
		lo, err := node.RunLocal(ctx, node.LocalOptions{Config: c, Text: o.Text, Workers: o.Workers, EvalBatches: 20, Log: o.Log,
			LinkBytesPerSec: o.LinkBytesPerSec, LinkRTT: o.LinkRTT, LinkLoss: o.LinkLoss,
			OnRound: func(r node.RoundInfo) {
				if o.Progress != nil {
					o.Progress(arm.Name, r.Round+1, c.Rounds)
				}
			}})
		if err != nil {
			return nil, fmt.Errorf("%s: %v", arm.Name, err)
		}
		vl, err := evaluate(c.Model, lo.Weights, val, c.Batch, pool)
		if err != nil {
			return nil, err
		}
		rows = append(rows, BandwidthRow{Name: arm.Name, ValLoss: vl, Up: lo.WorkerSent, Down: lo.WorkerRecv, Wall: lo.Wall,
			Compute: lo.Utilisation(), Note: fmt.Sprintf("%s up, %s down", c.Codec, c.UpdateCodec())})
	}
	if o.DDP {
		d, err := DDP(ctx, cfg, nil, o.Workers, o.Text, pool, func(step, total int) {
			if o.Progress != nil {
				o.Progress("ddp", step, total)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("ddp: %v", err)
		}
		steps := cfg.Rounds * cfg.InnerSteps
		each := uint64(4*cfg.Model.NumParams()) * uint64(o.Workers) * uint64(steps)
		row := BandwidthRow{Name: d.Name, ValLoss: d.ValLoss, Up: each, Down: each, Wall: d.Wall, Compute: 1, Note: "compute measured in one process"}
		if o.LinkBytesPerSec > 0 {
			perStep := time.Duration(2*4*float64(cfg.Model.NumParams())/o.LinkBytesPerSec*float64(time.Second)) + o.LinkRTT +
				2*expectedStalls(4*cfg.Model.NumParams(), o.LinkBytesPerSec, o.LinkRTT, o.LinkLoss)
			comm := time.Duration(steps) * perStep
			row.Wall = d.Wall + comm
			row.Compute = float64(d.Wall) / float64(row.Wall)
			row.Note = fmt.Sprintf("compute measured in one process; wall adds %v a step for the fp32 exchange at the link", perStep.Round(time.Millisecond))
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// expectedStalls is the expected time a transfer of n bytes over a link of
// rate bytes/s, round-trip time rtt and packet loss p waits for
// retransmissions under the loss emulation of a worker's link (wire.Link,
// with the pieces a worker's limiter lets through: 20 ms of traffic, at
// least 16 KiB).
func expectedStalls(n int, rate float64, rtt time.Duration, p float64) time.Duration {
	if p <= 0 || n <= 0 {
		return 0
	}
	piece := max(int(rate/50), 16<<10)
	pieces := (n + piece - 1) / piece
	perPiece := 1 - math.Pow(1-p, float64((piece+wire.MSS-1)/wire.MSS))
	return time.Duration(float64(pieces) * perPiece * float64(wire.RTO(rtt)))
}
