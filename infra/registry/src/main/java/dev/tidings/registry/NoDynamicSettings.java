package dev.tidings.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.inject.Produces;
import javax.inject.Singleton;

/**
 * Apicurio's list of settings that may be changed while it runs is made by a Quarkus build
 * extension that Maven Central, as reached here, does not serve. This stands in for it with
 * an empty list: every setting keeps the value it starts with, which is all a test needs.
 */
public class NoDynamicSettings {
    @Produces
    @Singleton
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
