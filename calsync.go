// Package calsync registers the four Cloud Functions entry points. Google's Go
// buildpack builds the package at the root of the upload, so this is the one
// file there; the work lives in functions/*.
package calsync

import (
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/calsync/calsync/functions/connect"
	"github.com/calsync/calsync/functions/renewchannels"
	"github.com/calsync/calsync/functions/syncworker"
	"github.com/calsync/calsync/functions/webhook"
)

func init() {
	// Registration only: every handler builds its clients on first use.
	functions.HTTP("Webhook", webhook.Handle)
	functions.HTTP("RenewChannels", renewchannels.Handle)
	functions.HTTP("SyncWorker", syncworker.Handle)
	functions.HTTP("Connect", connect.Handle)
}
