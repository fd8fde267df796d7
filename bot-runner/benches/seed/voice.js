// The seed's voice stack playing: one discord.js client joins the voice channel of every
// guild in SEED_TARGETS (JSON [[guild, channel], ...]) and plays SEED_MEDIA there with
// @discordjs/voice, as a WebM Opus stream passed through (SEED_INPUT=webm) or through
// ffmpeg and the Opus encoder (SEED_INPUT=arbitrary). Prints "playing" once every guild is.
const fs = require('node:fs');
const http = require('node:http');
const { Client, GatewayIntentBits } = require('discord.js');
const voice = require('@discordjs/voice');

const [token] = fs.readFileSync(process.env.SEED_TOKEN_FILE, 'utf8').split('\n');
const targets = JSON.parse(process.env.SEED_TARGETS);
const media = process.env.SEED_MEDIA;

function fetchStream(url) {
  return new Promise((resolve, reject) => http.get(url, resolve).on('error', reject));
}

async function resource() {
  if (process.env.SEED_INPUT === 'webm') {
    return voice.createAudioResource(await fetchStream(media), { inputType: voice.StreamType.WebmOpus });
  }
  return voice.createAudioResource(media, { inputType: voice.StreamType.Arbitrary });
}

const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildVoiceStates],
  rest: { api: process.env.SEED_API },
});
client.once('clientReady', async () => {
  try {
    for (const [guildId, channelId] of targets) {
      const guild = client.guilds.cache.get(guildId);
      const connection = voice.joinVoiceChannel({ guildId, channelId, adapterCreator: guild.voiceAdapterCreator });
      connection.on('error', (e) => console.error(`voice ${guildId}: ${e.message}`));
      await voice.entersState(connection, voice.VoiceConnectionStatus.Ready, 30_000);
      const player = voice.createAudioPlayer();
      player.on('error', (e) => console.error(`player ${guildId}: ${e.message}`));
      connection.subscribe(player);
      player.play(await resource());
    }
    console.log('playing');
  } catch (e) {
    console.error(`could not play: ${e.stack}`);
    process.exit(1);
  }
});
client.login(token).catch((e) => {
  console.error(`login failed: ${e.message}`);
  process.exit(1);
});
