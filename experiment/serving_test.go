package experiment

import (
	"context"
	"testing"

	"github.com/cairnlabs/cairn/gpt"
	"github.com/cairnlabs/cairn/kernels"
)

// A small load: every request answered, one signed receipt each, and the
// fees in the receipts, in the responses' usage and charged to the
// accounts agree to the unit.
func TestServingLoad(t *testing.T) {
	m := untrainedModel(t, gpt.DefaultConfig(16, 1, 2, 32), 1)
	rep, err := Serving(context.Background(), ServingOptions{Model: m, Clients: 8, Requests: 40, MaxTokens: 8, Price: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Receipts != 40 || rep.BadReceipts != 0 || rep.Tokens != 40*8 {
		t.Fatalf("%+v", rep)
	}
	want := uint64(3 * 40 * (8 + 7))
	if rep.ReceiptFees != want || rep.UsageFees != want || rep.Charged != want {
		t.Fatalf("fees: receipts %d, usage %d, charged %d, want %d", rep.ReceiptFees, rep.UsageFees, rep.Charged, want)
	}
	if rep.Recorded != 40 || rep.Debited != want || rep.Credited != want || !rep.SupplyConserved {
		t.Fatalf("on the ledger: %d recorded, debited %d, credited %d, supply conserved %v; want 40 and %d", rep.Recorded, rep.Debited, rep.Credited, rep.SupplyConserved, want)
	}
}

// untrainedModel is a model of config c at its seed's initialisation, on
// a one-thread pool closed with the test.
func untrainedModel(t *testing.T, c gpt.Config, seed uint64) *gpt.Model {
	t.Helper()
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := gpt.New(c, pool)
	if err != nil {
		t.Fatal(err)
	}
	gpt.InitParams(c, m.Params, seed)
	return m
}
