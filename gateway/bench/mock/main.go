// A fast mock OpenAI-compatible upstream with a FIXED latency, for gateway/bench/run.sh.
// Go's standard library only, so it builds in seconds with no download. Loopback only.
//
//	go run ./gateway/bench/mock -listen 127.0.0.1:0 -latency-ms 10 -port-file FILE
//
// POST /v1/chat/completions: not streamed, waits the latency then answers one completion
// with usage; streamed ("stream": true), sends the headers at once, then 4 content chunks
// spaced evenly so that the last one and "data: [DONE]" leave after the latency (plus a
// usage chunk when stream_options.include_usage is set). GET /v1/models lists "bench".
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

var words = []string{"Surplus ", "belongs ", "to the ", "members."}

type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address (loopback only)")
	latencyMs := flag.Int("latency-ms", 10, "fixed latency of every answer")
	portFile := flag.String("port-file", "", "write the bound address here")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("listen on loopback only, not %q", *listen)
	}
	latency := time.Duration(*latencyMs) * time.Millisecond
	usage := map[string]int{"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[{"id":"bench","object":"model","created":1,"owned_by":"bench"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`, 400)
			return
		}
		if req.Model == "" {
			req.Model = "bench"
		}
		if !req.Stream {
			time.Sleep(latency)
			content := ""
			for _, w := range words {
				content += w
			}
			w.Header().Set("content-type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
				"usage":   usage,
			})
			return
		}
		w.Header().Set("content-type", "text/event-stream")
		w.Header().Set("cache-control", "no-cache")
		w.WriteHeader(200)
		fl, _ := w.(http.Flusher)
		if fl != nil {
			fl.Flush()
		}
		step := latency / time.Duration(len(words))
		for i, word := range words {
			time.Sleep(step)
			delta := map[string]any{"content": word}
			if i == 0 {
				delta["role"] = "assistant"
			}
			var finish any
			if i == len(words)-1 {
				finish = "stop"
			}
			chunk, _ := json.Marshal(map[string]any{
				"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": req.Model,
				"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
			})
			fmt.Fprintf(w, "data: %s\n\n", chunk)
			if i == len(words)-1 {
				if req.StreamOptions.IncludeUsage {
					last, _ := json.Marshal(map[string]any{"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": req.Model, "choices": []any{}, "usage": usage})
					fmt.Fprintf(w, "data: %s\n\n", last)
				}
				fmt.Fprint(w, "data: [DONE]\n\n")
			}
			if fl != nil {
				fl.Flush()
			}
		}
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	fmt.Printf("bench upstream on http://%s/v1 latency %v\n", addr, latency)
	if *portFile != "" {
		os.WriteFile(*portFile, []byte(addr), 0o644)
	}
	log.Fatal(http.Serve(ln, mux))
}
