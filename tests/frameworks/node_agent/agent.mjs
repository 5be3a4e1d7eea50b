// The framework matrix's Node.js agent: a tool loop over the official `openai` package, instrumented
// with the OpenTelemetry JS SDK as its users do: a NodeTracerProvider exporting OTLP/protobuf to
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the harness points it at itself), and a span per model call
// following the GenAI conventions. Tool runs get no span of their own: coSTAR infers them from the
// model's messages. Prompt on stdin; the answer goes to answer.txt in the working directory.
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import OpenAI from "openai";

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-support-agent" }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
});
provider.register();
const tracer = trace.getTracer("node-support-agent");

const MODEL = "gpt-4.1-mini";
const PARAMETERS = { type: "object", properties: { customer_id: { type: "string" } }, required: ["customer_id"] };
const TOOLS = [
  { type: "function", function: { name: "lookup_customer", description: "Look up a customer by id.", parameters: PARAMETERS } },
  { type: "function", function: { name: "list_orders", description: "List a customer's open orders.", parameters: PARAMETERS } },
];

const shop = {
  lookup_customer: ({ customer_id }) => ({ id: customer_id, name: "Ada Lovelace", tier: "gold" }),
  list_orders: () => {
    if (!existsSync(".orders_failed_once")) {
      writeFileSync(".orders_failed_once", "1");
      throw new Error("orders service temporarily unavailable");
    }
    return [{ id: "O-1", status: "open" }, { id: "O-7", status: "open" }];
  },
};

function runTool(call) {
  try {
    return JSON.stringify(shop[call.function.name](JSON.parse(call.function.arguments)));
  } catch (err) {
    return `Error: ${err.message}`;
  }
}

async function chat(client, messages) {
  return tracer.startActiveSpan(`chat ${MODEL}`, async (span) => {
    span.setAttributes({
      "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": MODEL,
      "gen_ai.input.messages": JSON.stringify(messages),
    });
    try {
      const resp = await client.chat.completions.create({ model: MODEL, messages, tools: TOOLS });
      const choice = resp.choices[0];
      span.setAttributes({
        "gen_ai.response.model": resp.model, "gen_ai.response.id": resp.id,
        "gen_ai.usage.input_tokens": resp.usage.prompt_tokens, "gen_ai.usage.output_tokens": resp.usage.completion_tokens,
        "gen_ai.response.finish_reasons": [choice.finish_reason],
        "gen_ai.output.messages": JSON.stringify([{ ...choice.message, finish_reason: choice.finish_reason }]),
      });
      return choice.message;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

async function main() {
  const prompt = readFileSync(0, "utf8");
  const client = new OpenAI({ baseURL: process.env.MODEL_BASE_URL, apiKey: "sk-test-scripted" });
  const messages = [{ role: "system", content: "You are a support agent. Use the tools." }, { role: "user", content: prompt }];
  const answer = await tracer.startActiveSpan("invoke_agent node-support", { attributes: {
    "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "node-support" } }, async (span) => {
    try {
      for (;;) {
        const msg = await chat(client, messages);
        messages.push(msg);
        if (!msg.tool_calls || msg.tool_calls.length === 0) return msg.content ?? "";
        for (const call of msg.tool_calls) {
          messages.push({ role: "tool", tool_call_id: call.id, content: runTool(call) });
        }
      }
    } finally {
      span.end();
    }
  });
  writeFileSync("answer.txt", answer);
  console.log(answer);
  await provider.shutdown();
}

await main();
