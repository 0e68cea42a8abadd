package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// A customer's rooms: keys apart per customer; the domains listing each
// room kept by array unions and removals, so two domains' listings written
// at once both land; a domain forgotten leaves the others.
func TestListedRooms(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	if RoomKey("C1", "R@x") != RoomKey("C1", "r@x") || RoomKey("C1", "r@x") == RoomKey("C2", "r@x") || CustomerKey("C1") == CustomerKey("C2") {
		t.Fatal("room or customer keys do not tell them apart")
	}
	if k := CustomerKey("C1"); k[0] != 'w' || len(k) != 27 {
		t.Fatalf("customer key %q", k)
	}
	if err := st.PutCustomer(ctx, ""); err == nil {
		t.Fatal("a customer without an id was accepted")
	}
	for range 2 { // idempotent
		if err := st.PutCustomer(ctx, "C1"); err != nil {
			t.Fatal(err)
		}
	}
	if cu, err := st.GetCustomer(ctx, "C1"); err != nil || cu.Status != StatusActive {
		t.Fatalf("customer %+v %v", cu, err)
	}
	rooms := []string{"r1@x", "r2@x", "r3@x"}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, d := range []string{"one.test", "Two.test"} {
		wg.Go(func() { errs <- st.ListedRooms(ctx, "C1", d, rooms) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	listed := func() string {
		t.Helper()
		got, err := st.RoomsOfCustomer(ctx, "C1")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rooms {
			d := slices.Clone(got[CalendarKey(r)].Domains)
			slices.Sort(d)
			out = append(out, fmt.Sprintf("%s:%v", r, d))
		}
		return fmt.Sprint(out)
	}
	if got := listed(); got != "[r1@x:[one.test two.test] r2@x:[one.test two.test] r3@x:[one.test two.test]]" {
		t.Fatalf("after both listings: %s", got)
	}
	// one.test no longer lists r3; two.test is forgotten.
	if err := st.ListedRooms(ctx, "C1", "one.test", rooms[:2]); err != nil {
		t.Fatal(err)
	}
	if err := st.ForgetRoomDomain(ctx, "C1", "two.test"); err != nil {
		t.Fatal(err)
	}
	if got := listed(); got != "[r1@x:[one.test] r2@x:[one.test] r3@x:[]]" {
		t.Fatalf("after a shorter listing and a domain forgotten: %s", got)
	}
	if other, _ := st.RoomsOfCustomer(ctx, "C2"); len(other) != 0 {
		t.Fatalf("another customer's rooms: %v", other)
	}
}
