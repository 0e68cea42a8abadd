package calgen

import (
	"context"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// Every mutation works against the emulator, and a seed replays the same calendar.
func TestSeedAndStepsAgainstTheEmulator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	counts := func(seed uint64) (map[Op]int, int) {
		_, base := calendaremu.Start(t, calendaremu.Options{})
		svc, err := calendaremu.NewService(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		g := New(svc, "primary", seed)
		if err := g.Seed(ctx, 60); err != nil {
			t.Fatal(err)
		}
		ops := map[Op]int{}
		for i := 0; i < 300; i++ {
			op, err := g.Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ops[op]++
		}
		res, err := svc.Events.List("primary").ShowDeleted(true).MaxResults(2500).Context(ctx).Do()
		if err != nil {
			t.Fatal(err)
		}
		return ops, len(res.Items)
	}
	a, na := counts(7)
	b, nb := counts(7)
	for _, op := range []Op{OpCreate, OpCreateAllDay, OpCreateRecurring, OpUpdate, OpMove, OpDelete, OpEditInstance, OpCancelInstance, OpEditSeries, OpDeleteSeries} {
		if a[op] == 0 {
			t.Errorf("op %s never ran: %v", op, a)
		}
		if a[op] != b[op] {
			t.Errorf("same seed, different ops: %v vs %v", a, b)
		}
	}
	if na != nb || na < 60 {
		t.Errorf("events %d vs %d", na, nb)
	}
}
