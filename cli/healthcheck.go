package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// HealthCmd is 'mockstagram healthcheck': the container healthcheck of the
// distroless image, which has no shell and no curl. It GETs the URL and
// exits 0 on a 2xx answer, 1 otherwise (no answer within the timeout, a
// refused connection, any other status).
type HealthCmd struct {
	URL     string        `name:"url" help:"URL to GET (default: /readyz of --http-addr on the loopback address)." placeholder:"URL"`
	Timeout time.Duration `name:"timeout" default:"3s" help:"Give up after this long."`
	// The probed process's setting (MOCKSTAGRAM_HTTP_ADDR), as config.Config has it.
	HTTPAddr string `name:"http-addr" default:":8080" help:"Listen address of the process to probe (its --http-addr)."`
}

// healthBodyLimit bounds what is read (and printed) of the answer.
const healthBodyLimit = 512

// Run checks the URL.
func (c HealthCmd) Run(e env) error {
	url := c.URL
	if url == "" {
		u, err := readyzURL(c.HTTPAddr)
		if err != nil {
			return usageError{err}
		}
		url = u
	}
	if c.Timeout <= 0 {
		return usageError{errors.New("--timeout must be positive")}
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usageError{fmt.Errorf("healthcheck URL: %w", err)}
	}
	client := &http.Client{
		// A probe checks the endpoint it names, not where it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, healthBodyLimit))
	answer := strings.TrimSpace(string(body))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("healthcheck: %s answered %s: %s", url, resp.Status, answer)
	}
	fmt.Fprintf(e.stdout, "%s: %s %s\n", url, resp.Status, answer)
	return nil
}

// readyzURL is /readyz of the process listening on addr, reached over the
// loopback address when addr listens on every address (":8080").
func readyzURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--http-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
