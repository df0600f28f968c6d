// Package purgeloop is the background purge of the SQL session stores:
// the loop that deletes expired rows at a fixed interval until the store
// closes.
package purgeloop

import (
	"context"
	"time"
)

// Run calls purge every interval until ctx is done, and hands failed each
// error of a purge that ctx did not cut short. A purge that takes longer
// than interval delays the next one; ticks do not queue up.
func Run[N any](ctx context.Context, interval time.Duration, purge func(context.Context) (N, error), failed func(error)) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if _, err := purge(ctx); err != nil && ctx.Err() == nil {
				failed(err)
			}
		}
	}
}
