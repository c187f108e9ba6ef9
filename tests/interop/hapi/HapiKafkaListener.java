// HapiKafkaListener - the Java peer of tests/bench/bench_mllp.sh: an MLLP listener built on HAPI's
// HL7 server (HapiContext.newServer: SimpleServer, a thread per connection) with a ReceivingApplication
// that writes each message to Kafka with the Java producer (acks=all, idempotent) and returns the ACK
// only once the send's future has completed, as `cohortgate listen` acknowledges only after the
// broker's delivery report. What it does per message, like cohortgate: the raw message to the topic
// (the string HAPI's reader decoded, re-encoded in the same charset), the key a keyed hash
// (HMAC-SHA256) of MSH-4 and PID-3, headers with the peer's address, the receive time and the
// SHA-256 of the bytes; AA after delivery, AR when the send fails.
//
// usage: java HapiKafkaListener --port P --bootstrap HOST:PORT --topic T [--linger-ms 1]
// Prints "listening on P" once the server accepts connections; stops on SIGTERM.
import ca.uhn.hl7v2.AcknowledgmentCode;
import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.app.HL7Service;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.parser.CanonicalModelClassFactory;
import ca.uhn.hl7v2.protocol.MetadataKeys;
import ca.uhn.hl7v2.protocol.ReceivingApplication;
import ca.uhn.hl7v2.util.Terser;
import ca.uhn.hl7v2.validation.impl.ValidationContextFactory;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.Properties;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class HapiKafkaListener {
    static final byte[] KEY = "cohortgate-bench-hapi-peer-key-0".getBytes(StandardCharsets.US_ASCII);
    static final ThreadLocal<Mac> HMAC = ThreadLocal.withInitial(() -> {
        try {
            Mac m = Mac.getInstance("HmacSHA256");
            m.init(new SecretKeySpec(KEY, "HmacSHA256"));
            return m;
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    });
    static final ThreadLocal<MessageDigest> SHA = ThreadLocal.withInitial(() -> {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    });

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2)
            opt.put(args[i], args[i + 1]);
        int port = Integer.parseInt(opt.get("--port"));
        String topic = opt.get("--topic");

        Properties p = new Properties();
        p.put("bootstrap.servers", opt.get("--bootstrap"));
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("linger.ms", opt.getOrDefault("--linger-ms", "1"));
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);

        HapiContext ctx = new DefaultHapiContext();
        ctx.setValidationContext(ValidationContextFactory.noValidation());
        ctx.setModelClassFactory(new CanonicalModelClassFactory("2.5"));
        HL7Service server = ctx.newServer(port, false);
        server.registerApplication("*", "*", new ReceivingApplication<Message>() {
            @Override
            public Message processMessage(Message in, Map<String, Object> meta) throws HL7Exception {
                String raw = (String) meta.get(MetadataKeys.IN_RAW_MESSAGE);
                byte[] value = raw.getBytes(StandardCharsets.ISO_8859_1);
                Terser t = new Terser(in);
                Mac mac = HMAC.get();
                mac.update(("mllp.key\0" + t.get("/MSH-4-1") + "\0" + t.get("/.PID-3-4-1") + "\0"
                        + t.get("/.PID-3-1")).getBytes(StandardCharsets.UTF_8));
                byte[] key = HexFormat.of().formatHex(mac.doFinal()).getBytes(StandardCharsets.US_ASCII);
                ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, key, value);
                rec.headers().add("cg.mllp.remote",
                        (meta.get(MetadataKeys.IN_SENDING_IP) + ":" + meta.get(MetadataKeys.IN_SENDING_PORT))
                                .getBytes(StandardCharsets.US_ASCII));
                rec.headers().add("cg.mllp.received", Instant.now().toString().getBytes(StandardCharsets.US_ASCII));
                rec.headers().add("cg.mllp.sha256",
                        HexFormat.of().formatHex(SHA.get().digest(value)).getBytes(StandardCharsets.US_ASCII));
                try {
                    producer.send(rec).get(); // the ACK waits for the broker's acknowledgement
                    return in.generateACK();
                } catch (Exception e) {
                    try {
                        return in.generateACK(AcknowledgmentCode.AR, new HL7Exception("not stored: " + e));
                    } catch (java.io.IOException io) {
                        throw new HL7Exception(io);
                    }
                }
            }

            @Override
            public boolean canProcess(Message in) {
                return true;
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.stop();
            producer.close();
        }));
        server.startAndWait();
        System.out.println("listening on " + port);
        System.out.flush();
        Thread.currentThread().join();
    }
}
