package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
)

func TestLogFormat(t *testing.T) {
	t.Parallel()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer file.Close()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devNull.Close()

	for _, tc := range []struct {
		name   string
		out    io.Writer
		format string
		want   string
	}{
		{"auto on a buffer", &bytes.Buffer{}, config.LogFormatAuto, config.LogFormatJSON},
		{"auto on a file", file, config.LogFormatAuto, config.LogFormatJSON},
		{"auto on a pipe", w, config.LogFormatAuto, config.LogFormatJSON},
		{"auto on a character device", devNull, config.LogFormatAuto, config.LogFormatText},
		{"json on a character device", devNull, config.LogFormatJSON, config.LogFormatJSON},
		{"text on a pipe", w, config.LogFormatText, config.LogFormatText},
	} {
		t.Run(tc.name, func(t *testing.T) { // not parallel: the files close when the test returns
			assert.Equal(t, tc.want, app.LogFormat(tc.out, tc.format))
		})
	}
}

func TestNewLoggerAutoIsJSONOffATerminal(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	require.Equal(t, config.LogFormatAuto, cfg.LogFormat)
	var buf bytes.Buffer
	app.NewLoggerTo(&buf, cfg).Info("hello", "pk", 1000000)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	assert.Equal(t, "hello", rec["msg"])
	assert.Equal(t, 1000000.0, rec["pk"])

	buf.Reset()
	cfg.LogFormat = config.LogFormatText
	app.NewLoggerTo(&buf, cfg).Info("hello", "pk", 1000000)
	assert.True(t, strings.HasPrefix(buf.String(), "time="), buf.String())
	assert.Contains(t, buf.String(), "msg=hello pk=1000000")
}
