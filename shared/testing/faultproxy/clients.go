package faultproxy

import (
	"context"
	"math"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Clients of this process that go through a proxy while the process's
// FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST name the emulator itself
// (tests that compare what the service holds with what a client was told).
// Child processes use the proxy by having those variables name Addr().

// FirestoreClient is a Firestore client of project that talks to addr the way
// the client library talks to the emulator.
func FirestoreClient(ctx context.Context, project, addr string) (*firestore.Client, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(emulatorCreds{}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, err
	}
	return firestore.NewClient(ctx, project, option.WithGRPCConn(conn))
}

// PubSubClient is a Pub/Sub client of project that talks to addr.
func PubSubClient(ctx context.Context, project, addr string) (*pubsub.Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return pubsub.NewClient(ctx, project, option.WithGRPCConn(conn))
}

// emulatorCreds is what the Firestore client sends the emulator: the owner,
// so security rules do not apply.
type emulatorCreds struct{}

func (emulatorCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}

func (emulatorCreds) RequireTransportSecurity() bool { return false }
