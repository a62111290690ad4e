package usersync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The webhook sink: each Apply that changes the import POSTs one JSON batch of
// its changes to import.webhook.url.
//
//	POST <url>
//	Content-Type: application/json
//	Idempotency-Key: <hex SHA-256 of the body>
//	Authorization: Bearer <import.webhook.bearer_token>   (when set)
//
//	{"sequence":7,"mode":"create_update_remove","changes":[
//	  {"action":"update","user":{...},"previous":{...},"changes":[{"field":"phone","old":"...","new":"..."}]},
//	  ...]}
//
// The body is a pure function of the change (the applied import's sequence
// number, the mode and the changes, no time stamps), so the key identifies the
// change: a resent batch, or the same batch planned again after a crash
// before it was recorded, carries the same key, while the sequence number
// keeps a later identical change (a value changed back and forth) apart.
// Delivery is at least once: the receiver deduplicates by the key.
//
// Each attempt has import.webhook.timeout. Transport errors, timeouts, 5xx,
// 408 and 429 are retried with exponential backoff (1s, 2s, 4s, ... at most
// 30s) up to import.webhook.max_attempts; any other answer that is not 2xx
// (4xx, or a redirect, which is never followed so the token goes nowhere
// else) ends the delivery at once. A batch not delivered stays pending in
// applied.json, and later batches wait behind it so the receiver sees the
// changes in order; the next Apply sends it again.

// webhookBatch is the body of one webhook request.
type webhookBatch struct {
	// Sequence is the applied import the changes belong to.
	Sequence uint64 `json:"sequence"`
	// Mode is import.mode.
	Mode string `json:"mode"`
	// Changes are the creates, updates, disables and removes applied, in that
	// order, each sorted by username.
	Changes []PlanItem `json:"changes"`
}

// Backoff between webhook attempts: webhookBackoffBase doubled per attempt, at
// most webhookBackoffMax.
const (
	webhookBackoffBase = time.Second
	webhookBackoffMax  = 30 * time.Second
	// defaultWebhookTimeout applies when import.webhook.timeout is not set.
	defaultWebhookTimeout = 10 * time.Second
	// maxWebhookResponse is how much of a response body is read (and thrown
	// away) so the connection can be reused.
	maxWebhookResponse = 64 << 10
)

// newPendingBatch builds the webhook batch of an applied import's changes.
func newPendingBatch(seq uint64, mode string, changes []PlanItem) (pendingBatch, error) {
	body, err := json.Marshal(webhookBatch{Sequence: seq, Mode: mode, Changes: changes})
	if err != nil {
		return pendingBatch{}, fmt.Errorf("webhook batch: %w", err)
	}
	return pendingBatch{Key: sha256Hex(body), Sequence: seq, Body: string(body)}, nil
}

// flushWebhook delivers the pending batches in order, stopping at the first
// that fails, and records what is still pending. It returns the delivery
// error, if any; failing to record is logged (the batches delivered are then
// sent again next time, with the same keys).
func (im *Importer) flushWebhook(ctx context.Context, res *ApplyResult) error {
	st := im.state
	if im.webhook.URL == "" || len(st.Pending) == 0 {
		return nil
	}
	pending := slices.Clone(st.Pending)
	var err error
	delivered := 0
	for ; delivered < len(pending); delivered++ {
		if err = im.deliver(ctx, &pending[delivered]); err != nil {
			break
		}
	}
	res.WebhookDelivered = delivered
	next := *st
	next.Pending = pending[delivered:]
	if serr := saveApplied(im.appliedPath, &next); serr != nil {
		im.log.Error("cannot record webhook delivery", zap.Error(serr))
		return errors.Join(err, serr)
	}
	im.state = &next
	return err
}

// deliver sends one batch, retrying as the file comment says. It counts the
// attempts and records the last error in b.
func (im *Importer) deliver(ctx context.Context, b *pendingBatch) error {
	log := im.log.With(zap.String("webhook", redactURL(im.webhook.URL)),
		zap.String("idempotency_key", b.Key), zap.Uint64("sequence", b.Sequence))
	attempts := max(im.webhook.MaxAttempts, 1)
	for attempt := 1; ; attempt++ {
		b.Attempts++
		err := im.post(ctx, b)
		if err == nil {
			b.LastError = ""
			log.Info("webhook batch delivered", zap.Int("attempt", attempt))
			return nil
		}
		b.LastError = err.Error()
		var we *webhookError
		retry := errors.As(err, &we) && we.retry && ctx.Err() == nil
		if !retry || attempt >= attempts {
			log.Error("webhook batch not delivered", zap.Int("attempt", attempt), zap.Bool("retryable", retry), zap.Error(err))
			return fmt.Errorf("webhook batch %s: %w", b.Key, err)
		}
		wait := min(webhookBackoffBase<<(attempt-1), webhookBackoffMax)
		log.Warn("webhook attempt failed; retrying", zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(err))
		if err := im.sleep(ctx, wait); err != nil {
			return fmt.Errorf("webhook batch %s: %w", b.Key, err)
		}
	}
}

// webhookError is a failed delivery attempt.
type webhookError struct {
	status int   // the HTTP status, 0 for a transport error
	err    error // the transport error
	retry  bool  // whether another attempt may succeed
}

func (e *webhookError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("webhook answered %d %s", e.status, http.StatusText(e.status))
	}
	return "post webhook: " + e.err.Error()
}

func (e *webhookError) Unwrap() error { return e.err }

// post makes one attempt.
func (im *Importer) post(ctx context.Context, b *pendingBatch) error {
	timeout := im.webhook.Timeout
	if timeout <= 0 {
		timeout = defaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, im.webhook.URL, strings.NewReader(b.Body))
	if err != nil {
		return &webhookError{err: errors.New("invalid import.webhook.url")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", b.Key)
	req.Header.Set("User-Agent", "ldapgate")
	if tok := string(im.webhook.BearerToken); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := im.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, query string included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &webhookError{err: err, retry: true}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookResponse))
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return nil
	case s >= 500, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests:
		return &webhookError{status: s, retry: true}
	default:
		return &webhookError{status: s}
	}
}

// webhookClient returns c with a redirect policy that follows no redirect
// (when c has none), or such a client when c is nil.
func webhookClient(c *http.Client) *http.Client {
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c == nil {
		return &http.Client{CheckRedirect: noRedirect}
	}
	if c.CheckRedirect == nil {
		cc := *c
		cc.CheckRedirect = noRedirect
		return &cc
	}
	return c
}

// sleepContext waits d or until ctx is done, whichever comes first.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// redactURL is a webhook URL fit for a log: no user info, query or fragment,
// where a token might hide.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[invalid url]"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
