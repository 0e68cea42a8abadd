package testenv

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

func TestMain(m *testing.M) { Main(m) }

func TestFirestoreEmulatorRoundTrip(t *testing.T) {
	Firestore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := firestore.NewClient(ctx, ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Doc("a/b").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	snap, err := client.Doc("a/b").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := snap.DataAt("x"); v != int64(1) {
		t.Fatalf("got %v", v)
	}
}

func TestPubSubEmulatorRoundTrip(t *testing.T) {
	PubSub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	project := ProjectID(t)
	client, err := pubsub.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topic, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/roundtrip"})
	if err != nil {
		t.Fatal(err)
	}
	pub := client.Publisher(topic.Name)
	defer pub.Stop()
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("hi")}).Get(ctx); err != nil {
		t.Fatal(err)
	}
}
