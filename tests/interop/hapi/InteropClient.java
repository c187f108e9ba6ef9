// InteropClient - HAPI's MLLP client against `cohortgate listen` (tests/interop/hapi/test_hapi_interop.sh).
//
// Sends every message of the corpus (HL7 v2 files, split at each MSH segment) over CONNECTIONS
// connections with HAPI's lower layer protocol (ca.uhn.hl7v2.llp.MinLowerLayerProtocol: its
// MinLLPWriter frames, its MinLLPReader unframes), each connection waiting for a message's ACK
// before sending its next one, as interface engines do. Every ACK is parsed by HAPI's PipeParser
// and its MSA-2 must be the message's MSH-10. Then the raw topic is read back with the Kafka Java
// client and every acknowledged message must be there, byte for byte as HAPI's writer sent it.
//
// The messages are sent as strings through the writer rather than as parsed Message objects, so
// the bytes on the wire are known exactly: segments end with a carriage return (as HAPI's own
// encoder writes them; files with LF or CRLF line ends are converted), and the writer and reader
// use ISO-8859-1, a byte-for-byte mapping, so messages in UTF-8 or GB 18030 cross unchanged. Each
// message is also given to HAPI's PipeParser, and the ones it cannot parse are listed with the
// parser's reason (they are sent all the same: the listener stores and answers them too).
//
// usage: java InteropClient --port P --corpus DIR --bootstrap HOST:PORT --topic T
//                           [--host H] [--connections N]
// Exit 0 when every check holds, 1 otherwise.
import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.llp.HL7Reader;
import ca.uhn.hl7v2.llp.HL7Writer;
import ca.uhn.hl7v2.llp.MinLLPReader;
import ca.uhn.hl7v2.llp.MinLLPWriter;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.parser.CanonicalModelClassFactory;
import ca.uhn.hl7v2.parser.PipeParser;
import ca.uhn.hl7v2.util.Terser;
import ca.uhn.hl7v2.validation.impl.ValidationContextFactory;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class InteropClient {
    static final class Msg {
        final String file;
        final int index; // the message's place in its file
        final String text; // ISO-8859-1: one char per byte
        String ack = ""; // MSA-1 of its ACK ("NE": none asked for)
        String hapiError; // why HAPI's PipeParser refused the message, null when it parsed it

        Msg(String file, int index, String text) {
            this.file = file;
            this.index = index;
            this.text = text;
        }
    }

    static final AtomicInteger failures = new AtomicInteger();

    static void fail(String what) {
        failures.incrementAndGet();
        System.err.println("FAIL: " + what);
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2)
            opt.put(args[i], args[i + 1]);
        String host = opt.getOrDefault("--host", "127.0.0.1");
        int port = Integer.parseInt(opt.get("--port"));
        int conns = Integer.parseInt(opt.getOrDefault("--connections", "10"));
        String topic = opt.get("--topic");

        List<Msg> msgs = readCorpus(Paths.get(opt.get("--corpus")));
        System.out.printf("corpus: %d message(s) from %d file(s)%n", msgs.size(),
                msgs.stream().map(m -> m.file).distinct().count());

        HapiContext ctx = new DefaultHapiContext();
        ctx.setValidationContext(ValidationContextFactory.noValidation());
        // every version (2.3, 2.4, 2.5.1, ...) parsed with the v2.5 structures
        ctx.setModelClassFactory(new CanonicalModelClassFactory("2.5"));
        ctx.getParserConfiguration().setValidating(false);
        for (Msg m : msgs) {
            try {
                ctx.getPipeParser().parse(m.text);
            } catch (Exception e) {
                String why = firstLine(e.getMessage());
                int cut = why.indexOf(". The following is the first");
                if (cut > 0) // EncodingNotSupportedException: say which line is no segment
                    why = why.substring(0, cut) + ": " + notASegment(m.text);
                m.hapiError = e.getClass().getSimpleName() + ": " + why;
            }
        }

        long t0 = System.nanoTime();
        List<Thread> threads = new ArrayList<>();
        for (int c = 0; c < conns; c++) {
            final int first = c;
            Thread t = new Thread(() -> sendShare(host, port, msgs, first, conns, ctx));
            t.start();
            threads.add(t);
        }
        for (Thread t : threads)
            t.join();
        long ms = (System.nanoTime() - t0) / 1_000_000;
        Map<String, Integer> codes = new TreeMap<>();
        for (Msg m : msgs)
            codes.merge(m.ack.isEmpty() ? "(none)" : m.ack, 1, Integer::sum);
        System.out.printf("%d connections, %d ms: ACK codes %s%n", conns, ms, codes);

        List<Msg> refused = msgs.stream().filter(m -> m.hapiError != null).collect(Collectors.toList());
        System.out.printf("HAPI's PipeParser refuses %d of %d message(s) (sent as they are all the same):%n",
                refused.size(), msgs.size());
        for (Msg m : refused)
            System.out.printf("  %s #%d (ACK %s): %s%n", m.file, m.index + 1, m.ack, m.hapiError);

        verifyTopic(opt.get("--bootstrap"), topic, msgs);
        if (failures.get() > 0) {
            System.out.println("FAILED: " + failures.get() + " check(s)");
            System.exit(1);
        }
        System.out.println("ok: every ACK names its message (MSA-2 = MSH-10), every acknowledged message is on "
                + topic + " byte for byte");
        System.exit(0);
    }

    // The first line of a message that does not look like a segment (a name, then MSH-1).
    static String notASegment(String msg) {
        String[] lines = msg.split("\r");
        String fs = msg.length() > 3 ? msg.substring(3, 4) : "|";
        if (lines.length > 0 && lines[0].matches("MSH.(" + java.util.regex.Pattern.quote(fs) + "+)?"))
            return "its MSH has no fields";
        for (int i = 1; i < lines.length; i++)
            if (!lines[i].matches("[A-Z][A-Z0-9]{2}(" + java.util.regex.Pattern.quote(fs) + ".*)?")) {
                String l = lines[i].length() > 60 ? lines[i].substring(0, 60) + "..." : lines[i];
                return "line " + (i + 1) + " is no segment ('" + l + "')";
            }
        return "";
    }

    static String firstLine(String s) {
        if (s == null)
            return "";
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }

    // Each file of the corpus, in name order, split into messages: a message starts at each line
    // that starts with MSH; batch envelope segments (FHS, BHS, BTS, FTS) are left out, HAPI's client
    // sends messages one by one. Line ends become carriage returns. A file without MSH is sent whole.
    static List<Msg> readCorpus(Path dir) throws IOException {
        List<Path> files;
        try (Stream<Path> s = Files.walk(dir)) {
            files = s.filter(Files::isRegularFile).sorted().collect(Collectors.toList());
        }
        List<Msg> out = new ArrayList<>();
        for (Path f : files) {
            String text = new String(Files.readAllBytes(f), StandardCharsets.ISO_8859_1);
            String name = dir.relativize(f).toString();
            String[] lines = text.split("\r\n|\r|\n");
            StringBuilder cur = null;
            int index = 0;
            for (String line : lines) {
                if (line.startsWith("MSH") && line.length() > 3) {
                    if (cur != null)
                        out.add(new Msg(name, index++, cur.toString()));
                    cur = new StringBuilder();
                }
                if (cur == null || line.trim().isEmpty() || line.matches("^(FHS|BHS|BTS|FTS)\\|.*"))
                    continue;
                cur.append(line).append('\r');
            }
            if (cur != null)
                out.add(new Msg(name, index, cur.toString()));
            else if (!text.trim().isEmpty())
                out.add(new Msg(name, 0, text)); // no MSH: the listener answers AE/CE
        }
        return out;
    }

    // Field n of segment seg, split by hand on the message's own field separator (MSH-1).
    static String field(String msg, String seg, int n) {
        if (!msg.startsWith("MSH") || msg.length() < 4)
            return "";
        String fs = msg.substring(3, 4);
        for (String line : msg.split("\r")) {
            if (!line.startsWith(seg + fs))
                continue;
            String[] f = line.split(java.util.regex.Pattern.quote(fs), -1);
            int i = seg.equals("MSH") ? n - 1 : n; // MSH-1 is the separator itself
            return i < f.length ? f[i] : "";
        }
        return "";
    }

    // One connection sends messages first, first + step, ..., each after the last one's ACK.
    static void sendShare(String host, int port, List<Msg> msgs, int first, int step, HapiContext ctx) {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), 5000);
            s.setSoTimeout(15000);
            s.setTcpNoDelay(true);
            HL7Writer w = new MinLLPWriter(s.getOutputStream(), StandardCharsets.ISO_8859_1);
            HL7Reader r = new MinLLPReader(s.getInputStream(), StandardCharsets.ISO_8859_1);
            PipeParser parser = ctx.getPipeParser();
            for (int i = first; i < msgs.size(); i += step) {
                Msg m = msgs.get(i);
                w.writeMessage(m.text);
                if (field(m.text, "MSH", 15).equals("NE")) { // no accept acknowledgement asked for
                    m.ack = "NE";
                    continue;
                }
                String raw = r.getMessage();
                if (raw == null) {
                    fail(m.file + " #" + (m.index + 1) + ": the connection closed without an ACK");
                    return;
                }
                Message ack;
                try {
                    ack = parser.parse(raw);
                } catch (Exception e) {
                    fail(m.file + " #" + (m.index + 1) + ": HAPI cannot parse the ACK: " + e + "\n" + raw);
                    continue;
                }
                Terser t = new Terser(ack);
                String code = t.get("/MSA-1"), ctrl = t.get("/MSA-2");
                String want = field(m.text, "MSH", 10);
                // the ACK's own encoding characters: compare MSH-10 as HAPI decoded it
                if (!want.isEmpty() && !want.equals(ctrl == null ? "" : ctrl)
                        && !want.equals(field(raw, "MSA", 2))) {
                    fail(m.file + " #" + (m.index + 1) + ": MSA-2 '" + ctrl + "', MSH-10 '" + want + "'");
                }
                if (!"ACK".equals(t.get("/MSH-9-1")))
                    fail(m.file + " #" + (m.index + 1) + ": the answer is no ACK: " + t.get("/MSH-9-1"));
                m.ack = code == null ? "" : code;
            }
        } catch (Exception e) {
            fail("connection " + first + ": " + e);
        }
    }

    // Reads the whole raw topic and looks every acknowledged message up in it, byte for byte.
    static void verifyTopic(String bootstrap, String topic, List<Msg> msgs) {
        Set<String> want = new HashSet<>();
        for (Msg m : msgs) {
            if (!m.ack.matches("AA|CA|AE|CE|NE"))
                fail(m.file + " #" + (m.index + 1) + ": acknowledged '" + m.ack + "', not AA/CA/AE/CE");
            want.add(m.text);
        }
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        p.put("max.partition.fetch.bytes", String.valueOf(16 << 20));
        Set<String> seen = new HashSet<>();
        int records = 0;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(10)))
                parts.add(new TopicPartition(topic, pi.partition()));
            c.assign(parts);
            c.seekToBeginning(parts);
            Map<TopicPartition, Long> end = c.endOffsets(parts);
            long deadline = System.currentTimeMillis() + 30000;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> rec : c.poll(Duration.ofMillis(500))) {
                    records++;
                    seen.add(new String(rec.value(), StandardCharsets.ISO_8859_1));
                }
                boolean done = true;
                for (TopicPartition tp : parts)
                    done &= c.position(tp) >= end.get(tp);
                if (done)
                    break;
            }
        }
        int missing = 0;
        for (Msg m : msgs) {
            if (!seen.contains(m.text)) {
                missing++;
                fail(m.file + " #" + (m.index + 1) + " (ACK " + m.ack + ") is not on " + topic + " byte for byte");
            }
        }
        System.out.printf("%s: %d record(s); %d distinct message(s) sent, %d of them missing%n", topic, records,
                want.size(), missing);
        if (records > msgs.size())
            fail(records + " records for " + msgs.size() + " messages: some were written twice");
    }
}
