package lifecycle

import (
	"context"

	"github.com/calsync/calsync/shared/store"
)

// EnrollStatus is the status an enrollment (an operator's registration, an
// identity enrolled again) gives a target of kind k, from the table.
func EnrollStatus(k Kind) store.Enrollment {
	return func(current string) string {
		if Decide(k, current, OpOperator, AnswerEnroll).Effect == EffectActivate {
			return store.StatusActive
		}
		return current
	}
}

// Register registers a calendar an operator names (or re-activates it,
// keeping its sync state); its status is the table's. It returns the key.
func Register(ctx context.Context, st *store.Store, cal store.Calendar) (string, error) {
	return st.RegisterCalendar(ctx, cal, EnrollStatus(KindCalendar))
}

// EnrollIdentity records an identity enrolled (or enrolled again, keeping
// its listing history); its status is the table's. It returns the key and
// the status it had ("": none). store.ErrOtherTenant: another tenant's.
func EnrollIdentity(ctx context.Context, st *store.Store, id store.Identity) (key, previous string, err error) {
	return st.PutIdentity(ctx, id, EnrollStatus(KindIdentity))
}

// ApplyList applies one listing of an identity's calendar list: the
// store's transaction around this package's PlanListing (see
// store.ApplyListing).
func ApplyList(ctx context.Context, st *store.Store, key string, l store.Listing) (store.Applied, error) {
	return st.ApplyListing(ctx, key, l, PlanListing)
}

// ApplyRooms applies one listing of a Workspace customer's rooms: the
// store's transaction around this package's PlanListing, as ApplyList.
func ApplyRooms(ctx context.Context, st *store.Store, customerID string, l store.Listing) (store.Applied, error) {
	return st.ApplyCustomerRooms(ctx, customerID, l, PlanListing)
}
