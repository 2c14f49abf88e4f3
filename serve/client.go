package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// CompletionResponse is what a client reads of a completion.
type CompletionResponse struct {
	Choices []struct {
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// Complete posts a completion request (body, marshalled to JSON) to url
// (an OpenAI-compatible .../v1/completions) with apiKey, reading at most
// 1 MiB of answer. A status other than 200 is an error quoting the
// server's answer, as is an answer without choices.
func Complete(ctx context.Context, c *http.Client, url, apiKey string, body any) (*CompletionResponse, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the endpoint answered %d: %s", resp.StatusCode, bytes.TrimSpace(ans))
	}
	var v CompletionResponse
	if err := json.Unmarshal(ans, &v); err != nil || len(v.Choices) == 0 {
		return nil, fmt.Errorf("the endpoint's answer is not a completion: %.200s", ans)
	}
	return &v, nil
}
