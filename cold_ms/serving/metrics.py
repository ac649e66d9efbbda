"""Prometheus metrics of the server (prometheus_client, one registry per server)."""
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STEP_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5, 5)


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("cold_requests_total", "Finished requests by outcome", ["outcome"], registry=r)
        self.rejected = Counter("cold_rejected_total", "Requests refused before queueing", ["reason"], registry=r)
        self.tokens = Counter("cold_generated_tokens_total", "Generated tokens, counted as they are delivered",
                              registry=r)
        self.prompt_tokens = Counter("cold_prompt_tokens_total", "Prompt tokens of accepted requests", registry=r)
        self.adapter_requests = Counter("cold_adapter_requests_total", "Accepted requests by adapter and role "
                                        "(expert or amateur; base = no adapter)", ["adapter", "role"], registry=r)
        self.queue = Gauge("cold_queue_length", "Requests waiting for a slot", registry=r)
        self.waiting = Gauge("cold_requests_waiting", "Requests waiting for a slot", registry=r)
        self.running = Gauge("cold_requests_running", "Requests holding a slot (prefilling or decoding)", registry=r)
        self.busy = Gauge("cold_slots_busy", "Occupied decode slots", registry=r)
        self.slots = Gauge("cold_slots_total", "Decode slots", registry=r)
        self.step_s = Histogram("cold_decode_step_seconds", "Latency of one decode step", buckets=STEP_BUCKETS,
                                registry=r)
        self.latency = Histogram("cold_request_seconds", "Request latency", buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("cold_time_to_first_token_seconds", "Time to first token", buckets=LATENCY_BUCKETS,
                              registry=r)
        self.itl = Histogram("cold_inter_token_seconds", "Time between two tokens of a request",
                             buckets=TOKEN_BUCKETS, registry=r)

    def step(self, seconds, busy):
        self.step_s.observe(seconds)
        self.busy.set(busy)

    def submitted(self, request):
        self.prompt_tokens.inc(len(request.prompt_ids))
        self.adapter_requests.labels(adapter=request.adapter or "base", role="expert").inc()
        if request.amateur is not None:
            self.adapter_requests.labels(adapter=request.amateur, role="amateur").inc()

    def token(self, since_previous):
        """A token delivered; since_previous: seconds since the request's previous one (None: its first)."""
        self.tokens.inc()
        if since_previous is not None:
            self.itl.observe(since_previous)

    def finished(self, job):
        self.requests.labels(outcome=job.finish_reason or "unknown").inc()
        self.latency.observe(time.perf_counter() - job.submitted)
        if job.first_token_s is not None:
            self.ttft.observe(job.first_token_s)

    def render(self, scheduler):
        if scheduler is not None:
            self.queue.set(scheduler.queue_length())
            self.waiting.set(scheduler.queue_length())
            self.running.set(scheduler.busy_slots())
            self.busy.set(scheduler.busy_slots())
            self.slots.set(len(scheduler.slots))
        return generate_latest(self.registry)
